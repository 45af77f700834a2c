"""Images in requests (issue 17): OpenAI chat image_url parts through the official `openai` client
and SGLang's image_data on /generate.

Three servers:
  - the text model (conftest's `server`): image content is a 400, the server stays up;
  - `vision_frontend`: qwen3_moe_tiny dressed as a vision-language model (the vision_config,
    image_token_id, preprocessor_config.json and chat template of qwen3_vl_moe_tiny, whose
    tokenizer is qwen3_moe_tiny's). Its ranks run the text model and ignore the images, so this
    checks the frontend alone: decoding, the 400s, and the prompt as the HF processor builds it
    (usage.prompt_tokens equals the length of Qwen3VLProcessor's input_ids, from
    tests/data/images/chat_cases.json);
  - `vl_server`: the real qwen3_vl_moe_tiny, skipped while the model side of issue 17 is not
    merged (the server cannot load it yet).
"""

import base64
import json
import pathlib
import shutil

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
def vision_frontend(tmp_path_factory):
    model = tmp_path_factory.mktemp("dressed") / "qwen3_moe_tiny_with_vision"
    shutil.copytree(MODEL, model)
    config = json.loads((model / "config.json").read_text())
    vl_config = json.loads((VL_MODEL / "config.json").read_text())
    for key in ("vision_config", "image_token_id", "vision_start_token_id", "vision_end_token_id"):
        config[key] = vl_config[key]
    (model / "config.json").write_text(json.dumps(config))
    for name in ("preprocessor_config.json", "chat_template.jinja"):
        shutil.copy(VL_MODEL / name, model / name)
    s = Server(["--context-length", "256", "--allowed-local-media-path", str(IMAGES)],
               model=str(model))
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture(scope="module")
def vl_server():
    try:
        s = Server(["--allowed-local-media-path", str(IMAGES)], model=str(VL_MODEL))
    except RuntimeError as e:
        pytest.skip(f"epserve cannot serve qwen3_vl_moe_tiny yet (issue 17's model side): {e}")
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
def test_chat_prompt_is_the_hf_processors(vision_frontend, case):
    import openai

    client = openai.OpenAI(base_url=vision_frontend.url("/v1"), api_key="EMPTY", max_retries=0)
    messages = json.loads(json.dumps(case["messages"]))
    for part in messages[1]["content"]:
        if part["type"] == "image_url":
            name = part["image_url"]["url"]
            part["image_url"]["url"] = data_url(name, "image/jpeg" if name.endswith(".jpg") else "image/png")
    out = client.chat.completions.create(model="m", messages=messages, max_tokens=2, temperature=0)
    assert out.usage.prompt_tokens == len(case["input_ids"])


def test_generate_image_data_expands_the_placeholder(vision_frontend):
    case = CHAT_CASES[0]
    prompt = case["text"]
    for image in (data_url(case["images"][0]), [str(IMAGES / case["images"][0])],
                  base64.b64encode((IMAGES / case["images"][0]).read_bytes()).decode()):
        r = post(vision_frontend, "/generate", {"text": prompt, "image_data": image,
                                                 "sampling_params": {"max_new_tokens": 2}})
        assert r.status_code == 200, r.text
        assert r.json()["meta_info"]["prompt_tokens"] == len(case["input_ids"])
    # The prompt as HF's input_ids (already expanded) is taken as it is.
    r = post(vision_frontend, "/generate", {"input_ids": case["input_ids"], "image_data": [data_url(case["images"][0])],
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
def test_bad_image_sources(vision_frontend, url, needle):
    r = chat(vision_frontend, user_message(image_part(url)))
    assert_openai_error(r, 400, needle)
    assert r.json()["error"]["param"] == "messages"


@pytest.mark.parametrize("name, needle", [
    ("refused.gif", "the image is gif; epserve decodes PNG and JPEG only"),
    ("refused.bmp", "the image is bmp"),
    ("refused_cmyk.jpg", "CMYK"),
])
def test_unsupported_images(vision_frontend, name, needle):
    assert_openai_error(chat(vision_frontend, user_message(image_part(data_url(name)))), 400, needle)


def test_corrupt_and_truncated_images(vision_frontend):
    png = (IMAGES / "rgb_37x53.png").read_bytes()
    jpg = (IMAGES / "rgb_40x31.jpg").read_bytes()
    for data, needle in ((png[: len(png) // 2], "PNG is truncated"),
                         (jpg[: len(jpg) // 2], "JPEG is truncated"),
                         (png[:40] + bytes(b ^ 0x5A for b in png[40:80]) + png[80:], "PNG is corrupt")):
        url = "data:image/png;base64," + base64.b64encode(data).decode()
        assert_openai_error(chat(vision_frontend, user_message(image_part(url))), 400, needle)
    assert_serving(vision_frontend)


def test_placeholders_must_match_images(vision_frontend):
    r = post(vision_frontend, "/generate", {"text": "no placeholder here", "image_data": data_url("rgb_20x30.png")})
    assert_openai_error(r, 400, "0 image placeholder(s)")
    r = post(vision_frontend, "/generate", {"text": ["a", "b"], "image_data": [data_url("rgb_20x30.png")]})
    assert_openai_error(r, 400, "a list of 2 entries")


def test_too_many_image_tokens_for_the_context(vision_frontend):
    # --context-length 256; rgb_37x53 becomes 64x96 under Qwen3-VL's processor (6 tokens), so 60
    # copies take 360 image tokens.
    parts = [image_part(data_url("rgb_37x53.png"))] * 60
    r = chat(vision_frontend, user_message(*parts))
    assert_openai_error(r, 400, "of them for 60 image(s)) is longer than the model's context length")
    assert_serving(vision_frontend)


def test_images_only_in_user_messages(vision_frontend):
    messages = [{"role": "system", "content": [image_part(data_url("rgb_20x30.png"))]},
                {"role": "user", "content": "hi"}]
    assert_openai_error(chat(vision_frontend, messages), 400, "user messages only")


def test_vl_model_generates_with_images(vl_server):
    import openai

    client = openai.OpenAI(base_url=vl_server.url("/v1"), api_key="EMPTY", max_retries=0)
    case = CHAT_CASES[1]
    messages = json.loads(json.dumps(case["messages"]))
    for part in messages[1]["content"]:
        if part["type"] == "image_url":
            part["image_url"]["url"] = data_url(part["image_url"]["url"])
    out = client.chat.completions.create(model="m", messages=messages, max_tokens=4, temperature=0)
    assert out.usage.prompt_tokens == len(case["input_ids"])
    r = post(vl_server, "/generate", {"text": CHAT_CASES[0]["text"],
                                      "image_data": data_url(CHAT_CASES[0]["images"][0]),
                                      "sampling_params": {"max_new_tokens": 4, "temperature": 0}})
    assert r.status_code == 200, r.text
