"""The prompt set the default model's expert distribution is recorded with (definitions,
Python questions, arithmetic, small talk as chat requests; plain-text completions), none of them
training examples verbatim. Shared by expert_distribution.py and record_distribution.py."""

WORKLOADS = {
    "definitions": [f"What does the word \"{w}\" mean?" for w in (
        "happy", "river", "window", "anger", "teacher", "mountain", "bread", "quickly",
        "garden", "ocean", "strong", "music")] + [f"What is a {w}?" for w in (
        "dog", "computer", "bridge", "doctor", "forest", "letter", "train", "city")],
    "python": [f"What does {f} do?" for f in (
        "os.path.join()", "json.dumps()", "str.split()", "sorted()", "math.sqrt()",
        "random.choice()", "time.sleep()", "re.match()", "len()", "open()",
        "itertools.chain()", "subprocess.run()")] + [
        "How do I read a file in Python?", "What is a list comprehension?",
        "What is the difference between a list and a tuple?", "Explain Python decorators."],
    "arithmetic": ["What is 12 + 7?", "What is 45 - 18?", "Compute 6 * 7.", "What is 99 + 1?",
                   "How much is 8 * 9?", "What is 30 - 45?", "Compute 17 + 26.",
                   "What is 11 * 11?"],
    "small_talk": ["Hello!", "Who are you?", "What can you do?", "Thank you!",
                   "Good morning.", "How are you?", "What is your name?", "Goodbye."],
    "text": ["The Python standard library", "A dictionary is", "To run means",
             "This module provides", "The weather today", "In the beginning",
             "An exception is raised when", "The word \"bright\" means"],
}
