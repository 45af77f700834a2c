"""Images in requests (issue 17): OpenAI chat image_url parts through the official `openai` client
and SGLang's image_data on /generate.

Three servers:
  - the text model (conftest's `server`): image content is a 400, the server stays up;
  - `vl_server`: qwen3_vl_moe_tiny (--context-length 256). The prompt is the one
    Qwen3VLProcessor builds (usage.prompt_tokens equals the length of its input_ids, in
    tests/data/images/chat_cases.json, with the greedy tokens transformers generates from it);
    bad, unsupported, remote and too many images are 400s and the server stays up;
  - one with two-batch overlap on two ranks: transformers' greedy tokens.
"""

import base64
import concurrent.futures
import json
import pathlib
import struct
import zlib

import pytest
import requests

from conftest import MODEL, Server
from helpers import assert_openai_error, post

IMAGES = pathlib.Path(__file__).resolve().parents[1] / "data" / "images"
VL_MODEL = pathlib.Path(MODEL).parent / "qwen3_vl_moe_tiny"
CHAT = "/v1/chat/completions"
CHAT_CASES = json.loads((IMAGES / "chat_cases.json").read_text())


def data_url(name, mime="image/png"):
    return f"data:{mime};base64," + base64.b64encode((IMAGES / name).read_bytes()).decode()


def image_part(url):
    return {"type": "image_url", "image_url": {"url": url}}


def user_message(*parts, text="What is in this picture?"):
    return [{"role": "user", "content": [*parts, {"type": "text", "text": text}]}]


def chat(server, messages, **extra):
    return post(server, CHAT, {"model": "m", "messages": messages, "max_tokens": 2, **extra})


@pytest.fixture(scope="module")
def vl_server():
    s = Server(["--context-length", "256", "--allowed-local-media-path", str(IMAGES),
                "--enable-multimodal"],
               model=str(VL_MODEL))
    yield s
    assert s.stop() == 0, s.output()


def assert_serving(server):
    assert requests.get(server.url("/health"), timeout=10).status_code == 200
    r = chat(server, [{"role": "user", "content": "still there?"}])
    assert r.status_code == 200, r.text


def test_text_model_refuses_images(server, client):
    import openai

    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="tiny-moe", max_tokens=2,
                                       messages=user_message(image_part(data_url("rgb_20x30.png"))))
    assert "does not take images" in str(e.value)
    r = post(server, "/generate", {"text": "hi", "image_data": data_url("rgb_20x30.png")})
    assert_openai_error(r, 400, "does not take images")
    assert_serving(server)


@pytest.mark.parametrize("case", CHAT_CASES, ids=[c["name"] for c in CHAT_CASES])
def test_chat_prompt_is_the_hf_processors(vl_server, case):
    import openai

    client = openai.OpenAI(base_url=vl_server.url("/v1"), api_key="EMPTY", max_retries=0)
    messages = json.loads(json.dumps(case["messages"]))
    for part in messages[1]["content"]:
        if part["type"] == "image_url":
            name = part["image_url"]["url"]
            part["image_url"]["url"] = data_url(name, "image/jpeg" if name.endswith(".jpg") else "image/png")
    out = client.chat.completions.create(model="m", messages=messages, max_tokens=2, temperature=0)
    assert out.usage.prompt_tokens == len(case["input_ids"])


def test_generate_image_data_expands_the_placeholder(vl_server):
    case = CHAT_CASES[0]
    prompt = case["text"]
    for image in (data_url(case["images"][0]), [str(IMAGES / case["images"][0])],
                  base64.b64encode((IMAGES / case["images"][0]).read_bytes()).decode()):
        r = post(vl_server, "/generate", {"text": prompt, "image_data": image,
                                                 "sampling_params": {"max_new_tokens": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["prompt_tokens"] == len(case["input_ids"])
    # The prompt as HF's input_ids (already expanded) is taken as it is.
    r = post(vl_server, "/generate", {"input_ids": case["input_ids"], "image_data": [data_url(case["images"][0])],
                                            "sampling_params": {"max_new_tokens": 2}})
    assert r.status_code == 200, r.text
    assert r.json()["meta_info"]["prompt_tokens"] == len(case["input_ids"])


@pytest.mark.parametrize("url, needle", [
    ("https://example.com/cat.png", "does not reach the network"),
    ("http://example.com/cat.png", "does not reach the network"),
    ("data:image/png;base64,iVBORw0KGgo=", "PNG is"),
    ("data:image/png;base64,%%%", "base64 is not valid"),
    ("/etc/hostname.png", "not an absolute path under --allowed-local-media-path"),
    ("file:///nonexistent/x.png", "not an absolute path under"),
    ("not-an-image!", "neither a data: URL"),
    ("bm90IGFuIGltYWdl", "cannot identify the image"),
])
def test_bad_image_sources(vl_server, url, needle):
    r = chat(vl_server, user_message(image_part(url)))
    assert_openai_error(r, 400, needle)
    assert r.json()["error"]["param"] == "messages"


@pytest.mark.parametrize("name, needle", [
    ("refused.tiff", "the image is tiff; epserve decodes PNG, JPEG, WebP, GIF and BMP only"),
    ("refused_cmyk.jpg", "CMYK"),
])
def test_unsupported_images(vl_server, name, needle):
    assert_openai_error(chat(vl_server, user_message(image_part(data_url(name)))), 400, needle)


@pytest.mark.parametrize("name, mime", [
    ("formats/lossy_rgba_26x30.webp", "image/webp"),
    ("formats/animated_18x14.gif", "image/gif"),
    ("formats/rgb24_27x21.bmp", "image/bmp"),
])
def test_webp_gif_and_bmp_images(vl_server, name, mime):
    # The decoded bytes are checked against PIL's in tests/unit/media/image_formats_test.cpp;
    # here the formats go through the chat API.
    r = chat(vl_server, user_message(image_part(data_url(name, mime))))
    assert r.status_code == 200, r.text
    assert r.json()["usage"]["prompt_tokens"] > 20


def test_corrupt_and_truncated_images(vl_server):
    png = (IMAGES / "rgb_37x53.png").read_bytes()
    jpg = (IMAGES / "rgb_40x31.jpg").read_bytes()
    for data, needle in ((png[: len(png) // 2], "PNG is truncated"),
                         (jpg[: len(jpg) // 2], "JPEG is truncated"),
                         (png[:40] + bytes(b ^ 0x5A for b in png[40:80]) + png[80:], "PNG is corrupt")):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        assert_openai_error(chat(vl_server, user_message(image_part(url))), 400, needle)
    assert_serving(vl_server)


def test_decompression_bomb_is_refused(vl_server):
    # A PNG whose header claims 20000 x 10000 pixels (over PIL's error limit of 178956970); the
    # check reads the header, before any pixel is decoded.
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20000, 10000, 8, 2, 0, 0, 0)) +
            chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b""))
    url = "data:image/png;base64," + base64.b64encode(bomb).decode()
    assert_openai_error(chat(vl_server, user_message(image_part(url))), 400,
                        "200000000 pixels (20000x10000), more than the 178956970 allowed")
    assert_serving(vl_server)


def test_placeholders_must_match_images(vl_server):
    r = post(vl_server, "/generate", {"text": "no placeholder here", "image_data": data_url("rgb_20x30.png")})
    assert_openai_error(r, 400, "0 image placeholder(s)")
    r = post(vl_server, "/generate", {"text": ["a", "b"], "image_data": [data_url("rgb_20x30.png")]})
    assert_openai_error(r, 400, "a list of 2 entries")


def test_too_many_image_tokens_for_the_context(vl_server):
    # --context-length 256; rgb_37x53 becomes 64x96 under Qwen3-VL's processor (6 tokens), so 60
    # copies take 360 image tokens.
    parts = [image_part(data_url("rgb_37x53.png"))] * 60
    r = chat(vl_server, user_message(*parts))
    assert_openai_error(r, 400, "of them for 60 image(s)) is longer than the model's context length")
    assert_serving(vl_server)


def test_images_only_in_user_messages(vl_server):
    messages = [{"role": "system", "content": [image_part(data_url("rgb_20x30.png"))]},
                {"role": "user", "content": "hi"}]
    assert_openai_error(chat(vl_server, messages), 400, "user messages only")


@pytest.mark.parametrize("case", CHAT_CASES, ids=[c["name"] for c in CHAT_CASES])
def test_greedy_tokens_are_transformers(vl_server, case):
    """The image through the whole server (decode, preprocess, placeholder, vision tower, MRoPE,
    DeepStack) gives the greedy tokens transformers generates from Qwen3VLProcessor's inputs."""
    images = [data_url(name, "image/jpeg" if name.endswith(".jpg") else "image/png")
              for name in case["images"]]
    r = post(vl_server, "/generate", {"text": case["text"], "image_data": images,
                                      "sampling_params": {"max_new_tokens": len(case["greedy"]),
                                                          "temperature": 0, "ignore_eos": True}})
    assert r.status_code == 200, r.text
    assert r.json()["output_ids"] == case["greedy"]
    assert r.json()["meta_info"]["prompt_tokens"] == len(case["input_ids"])


def generate_case(server, case):
    images = [data_url(name, "image/jpeg" if name.endswith(".jpg") else "image/png")
              for name in case["images"]]
    return post(server, "/generate", {"text": case["text"], "image_data": images,
                                      "sampling_params": {"max_new_tokens": len(case["greedy"]),
                                                          "temperature": 0, "ignore_eos": True}})


def test_two_batch_overlap_gives_transformers_tokens():
    """SGLang's launch of Qwen3-VL-MoE with two-batch overlap (--moe-a2a-backend deepep
    --enable-two-batch-overlap; EPSERVE_TBO_POLICY=always so that one node splits too): the chat
    cases alone (each prompt cut in two micro-batches) and together give transformers' tokens."""
    s = Server(["--context-length", "256", "--tp-size", "2", "--ep-size", "2",
                "--moe-a2a-backend", "deepep", "--enable-two-batch-overlap"],
               model=str(VL_MODEL), env={"EPSERVE_TBO_POLICY": "always"})
    try:
        for case in CHAT_CASES:
            r = generate_case(s, case)
            assert r.status_code == 200, r.text
            assert r.json()["output_ids"] == case["greedy"], case["name"]
        with concurrent.futures.ThreadPoolExecutor(len(CHAT_CASES)) as pool:
            answers = list(pool.map(lambda c: generate_case(s, c), CHAT_CASES))
        for case, r in zip(CHAT_CASES, answers):
            assert r.status_code == 200, r.text
            assert r.json()["output_ids"] == case["greedy"], case["name"]
    finally:
        assert s.stop() == 0, s.output()
