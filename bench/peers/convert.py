"""Runs llama.cpp's convert_hf_to_gguf.py on a model epserve made, telling its BPE pre-tokenizer
check which family the tokenizer belongs to (the small trained tokenizers epserve writes have a
hash the converter does not know). Nothing else of the converter changes.

    python convert.py LLAMA_CPP_DIR FAMILY MODEL_DIR OUT.gguf
"""
import sys

llama_dir, family, model_dir, out = sys.argv[1:5]
sys.path.insert(0, llama_dir + "/gguf-py")
sys.path.insert(0, llama_dir)

import convert_hf_to_gguf  # noqa: E402
from conversion import base  # noqa: E402

base.TextModel.get_vocab_base_pre = lambda self, tokenizer: family
sys.argv = ["convert_hf_to_gguf.py", model_dir, "--outtype", "bf16", "--outfile", out]
convert_hf_to_gguf.main()
