"""Images through PD disaggregation (Qwen3-VL): a prefill and a decode `epserve serve` of
qwen3_vl_moe_tiny, and `epserve router --pd-disaggregation` in front of them. The prefill server
runs the vision tower and the prompt; the decode server reads only the images' sizes (their
token counts and 3-D positions) and decodes with the prompt's rope delta, which comes with the
KV. Greedy tokens with one and with two images equal transformers' (tests/data/images/
chat_cases.json) and one plain server's, on /generate and through the router's chat API, with
one rank on each side and with EP 2 on the prefill side and DP attention on the decode side; a
bad image is a 400 from the prefill side with both servers still serving.
"""

import base64

import openai
import pytest
import requests

from conftest import Server
from test_disaggregation import EP2, EP2_DP, PdPair
from test_images import CHAT_CASES, IMAGES, VL_MODEL, data_url, image_part, user_message
from test_router import Router

ARGS = ["--context-length", "256", "--allowed-local-media-path", str(IMAGES)]


def case_images(case):
    return [data_url(name, "image/jpeg" if name.endswith(".jpg") else "image/png")
            for name in case["images"]]


def generate_body(case):
    return {"text": case["text"], "image_data": case_images(case),
            "sampling_params": {"max_new_tokens": len(case["greedy"]), "temperature": 0,
                                "ignore_eos": True}}


def chat_messages(case):
    return user_message(*[image_part(url) for url in case_images(case)], text="Describe them.")


@pytest.fixture(scope="module")
def plain():
    s = Server(ARGS, model=str(VL_MODEL))
    yield s
    assert s.stop() == 0, s.output()


@pytest.fixture(scope="module", params=[
    pytest.param(([], []), id="1rank-1rank"),
    pytest.param((EP2, EP2_DP), id="ep2-dpattn2"),
])
def pd(request):
    prefill_args, decode_args = request.param
    pair = PdPair(str(VL_MODEL), ARGS + prefill_args, ARGS + decode_args)
    router = None
    try:
        router = Router(["--pd-disaggregation", "--policy", "round_robin",
                         "--prefill", pair.prefill.base_url, str(pair.bootstrap_port),
                         "--decode", pair.decode.base_url])
        yield pair, router
    finally:
        if router is not None:
            assert router.stop() == 0, router.output()
        pair.stop()


def assert_both_serving(pair, router):
    for s in (pair.prefill, pair.decode):
        assert requests.get(s.url("/health"), timeout=10).status_code == 200
    r = requests.post(router.url("/generate"), json={
        "text": "still there?", "sampling_params": {"max_new_tokens": 2}}, timeout=60)
    assert r.status_code == 200, r.text + router.output()


@pytest.mark.parametrize("case", CHAT_CASES, ids=[c["name"] for c in CHAT_CASES])
def test_generate_with_images_gives_transformers_tokens(pd, plain, case):
    pair, router = pd
    # Straight to both servers, as the router does (bootstrap fields added).
    body = pair.body(None, **generate_body(case))
    del body["input_ids"]
    body["sampling_params"] = generate_body(case)["sampling_params"]
    p, d = pair.send(body)
    assert p.status_code == 200, p.text + pair.prefill.output()
    assert d.status_code == 200, d.text + pair.decode.output()
    assert d.json()["output_ids"] == case["greedy"]
    assert d.json()["meta_info"]["prompt_tokens"] == len(case["input_ids"])
    # Through the router, and on one plain server.
    r = requests.post(router.url("/generate"), json=generate_body(case), timeout=60)
    assert r.status_code == 200, r.text + router.output()
    assert r.json()["output_ids"] == case["greedy"]
    one = requests.post(plain.url("/generate"), json=generate_body(case), timeout=60)
    assert one.status_code == 200, one.text
    assert one.json()["output_ids"] == case["greedy"]


@pytest.mark.parametrize("case", CHAT_CASES, ids=[c["name"] for c in CHAT_CASES])
def test_chat_with_images_through_the_router_is_one_servers(pd, plain, case):
    pair, router = pd
    answers = []
    for base in (router.url("/v1"), plain.url("/v1")):
        client = openai.OpenAI(base_url=base, api_key="none", max_retries=0)
        out = client.chat.completions.create(model="m", messages=chat_messages(case),
                                             max_tokens=8, temperature=0)
        answers.append((out.choices[0].message.content, out.usage.prompt_tokens,
                        out.usage.completion_tokens))
    assert answers[0] == answers[1]
    # The same request again gives the same answer.
    again = openai.OpenAI(base_url=router.url("/v1"), api_key="none", max_retries=0)
    out = again.chat.completions.create(model="m", messages=chat_messages(case), max_tokens=8,
                                        temperature=0)
    assert (out.choices[0].message.content, out.usage.prompt_tokens) == answers[1][:2]


def test_bad_images_are_400s_from_the_prefill_side(pd):
    pair, router = pd
    png = (IMAGES / "rgb_37x53.png").read_bytes()
    # The header is whole (the decode server reads only that), the pixels are cut: the prefill
    # server refuses it, and the router and the decode server pass its 400 on.
    cut = "data:image/png;base64," + base64.b64encode(png[: len(png) // 2]).decode()
    r = requests.post(router.url("/v1/chat/completions"), json={
        "model": "m", "messages": user_message(image_part(cut)), "max_tokens": 2}, timeout=60)
    assert r.status_code == 400, r.text
    assert "PNG is truncated" in r.text
    # Straight to both servers: the prefill server fails the room at once, and the decode server
    # answers with its 400 instead of waiting for KV that will not come.
    body = pair.body(None, text=CHAT_CASES[0]["text"], image_data=cut)
    del body["input_ids"]
    p, d = pair.send(body)
    assert p.status_code == 400 and "PNG is truncated" in p.text, p.text
    assert d.status_code == 400 and "PNG is truncated" in d.text, d.text
    # Refused on both sides at once: an unsupported format, a placeholder without an image.
    tiff = data_url("refused.tiff")
    r = requests.post(router.url("/v1/chat/completions"), json={
        "model": "m", "messages": user_message(image_part(tiff)), "max_tokens": 2}, timeout=60)
    assert r.status_code == 400 and "the image is tiff" in r.text, r.text
    r = requests.post(router.url("/generate"), json={
        "text": "no placeholder", "image_data": data_url("rgb_20x30.png")}, timeout=60)
    assert r.status_code == 400 and "0 image placeholder(s)" in r.text, r.text
    assert_both_serving(pair, router)


@pytest.mark.parametrize("name", ["formats/animated_24x16.webp", "formats/offset_frame_12x10.gif",
                                  "formats/palette_25x18.bmp"])
def test_webp_gif_and_bmp_through_the_router_are_one_servers(pd, plain, name):
    # The decode server sizes these from their headers too (WebP canvas, GIF logical screen).
    pair, router = pd
    body = {"text": CHAT_CASES[0]["text"], "image_data": data_url(name),
            "sampling_params": {"max_new_tokens": 6, "temperature": 0, "ignore_eos": True}}
    answers = []
    for server in (router, plain):
        r = requests.post(server.url("/generate"), json=body, timeout=60)
        assert r.status_code == 200, r.text
        answers.append((r.json()["output_ids"], r.json()["meta_info"]["prompt_tokens"]))
    assert answers[0] == answers[1]
