"""`transferkit serve`: the real server in a subprocess on 127.0.0.1, real HTTP requests, answers and codes."""

from __future__ import annotations

import asyncio
import io
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_IMAGE_BACKBONE, write_image_folder, write_text_csv

httpx = pytest.importorskip("httpx")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _png(size: tuple[int, int] = (32, 32), seed: int = 0, noise: bool = True) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    array = np.random.default_rng(seed).integers(0, 255, (size[1], size[0], 3), dtype=np.uint8) if noise else \
        np.full((size[1], size[0], 3), 90, dtype=np.uint8)
    Image.fromarray(array).save(buffer, "PNG")
    return buffer.getvalue()


class Server:
    """``transferkit serve`` in a subprocess; stopped (and its output kept for failures) at the end."""

    def __init__(self, model: Path, *options: str, cache: Path) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TRANSFERKIT_CACHE": str(cache)}
        self.log = open(cache.parent / f"server-{self.port}.log", "w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "transferkit.cli.main", "serve", str(model), "--host", "127.0.0.1", "--port",
             str(self.port), *options], env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise AssertionError(f"server exited with {self.process.returncode}:\n{self.output()}")
            try:
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise AssertionError(f"server did not answer /health within 120 s:\n{self.output()}")

    def output(self) -> str:
        self.log.seek(0)
        return self.log.read()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def models(tmp_path_factory) -> dict[str, Path]:
    """A tiny image model (random CNN + probe) and a tiny text model (2-layer BERT + probe), saved as folders."""
    from transferkit import fit

    root = tmp_path_factory.mktemp("serve-models")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(root / "cache"))
        images = write_image_folder(root / "images", per_class=6)
        fit(str(images), backbone=TINY_IMAGE_BACKBONE, output=str(root / "image-model"), progress=False,
            device="cpu", report=False, tracking_uri="off")
        from transformers import AutoTokenizer, BertConfig, BertModel

        from transferkit.backbones.packaged import minilm_folder

        bert = root / "tiny-bert"
        tokenizer = AutoTokenizer.from_pretrained(str(minilm_folder()))
        import torch

        torch.manual_seed(0)
        BertModel(BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                             intermediate_size=64, max_position_embeddings=128)).save_pretrained(bert)
        tokenizer.save_pretrained(bert)
        fit(str(write_text_csv(root / "reviews.csv")), backbone=str(bert), output=str(root / "text-model"),
            progress=False, device="cpu", report=False, tracking_uri="off", max_length=64)
    return {"image": root / "image-model", "text": root / "text-model", "images": images, "cache": root / "cache"}


@pytest.fixture(scope="module")
def image_server(models):
    server = Server(models["image"], "--workers", "2", "--max-batch", "4", "--max-file-mb", "0.05",
                    "--max-image-pixels", "250000", "--top-k", "2", cache=models["cache"])
    yield server
    server.stop()


@pytest.fixture(scope="module")
def text_server(models):
    server = Server(models["text"], "--max-batch", "3", "--max-text-chars", "200", "--batch-wait-ms", "100",
                    cache=models["cache"])
    yield server
    server.stop()


def _files(*blobs: bytes, name: str = "files") -> list:
    return [(name, (f"img{i}.png", blob, "image/png")) for i, blob in enumerate(blobs)]


def test_image_predictions_match_the_python_api(image_server, models) -> None:
    from transferkit import predict

    paths = sorted((models["images"] / "fox").glob("*.png"))[:2] + sorted((models["images"] / "cat").glob("*.png"))[:1]
    answer = httpx.post(f"{image_server.url}/predict", files=[("files", (p.name, p.read_bytes(), "image/png"))
                                                             for p in paths], timeout=60)
    assert answer.status_code == 200, answer.text
    body = answer.json()
    assert body["runtime"] == "torch" and len(body["predictions"]) == 3
    direct = {r["input"]: r for r in predict(models["image"], str(models["images"]), progress=False)}
    for prediction, path in zip(body["predictions"], paths):
        assert prediction["input"] == path.name
        assert sum(prediction["probabilities"].values()) == pytest.approx(1.0, abs=1e-5)
        assert len(prediction["top_k"]) == 2  # the service's --top-k
        assert prediction["top_k"][0]["label"] == prediction["label"]
        reference = direct[str(path)]
        assert prediction["label"] == reference["label"]
        for label, p in reference["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(p, abs=1e-4)
    one = httpx.post(f"{image_server.url}/predict?top_k=1", files=_files(paths[0].read_bytes()), timeout=60).json()
    assert len(one["predictions"][0]["top_k"]) == 1


def test_health_info_and_openapi(image_server, models) -> None:
    health = httpx.get(f"{image_server.url}/health").json()
    assert health["status"] == "ok" and health["model"] == "image-model"
    info = httpx.get(f"{image_server.url}/info").json()
    assert info["classes"] == ["cat", "dog", "fox"] and info["modality"] == "image"
    assert info["preprocessing"]["kind"] == "image" and info["preprocessing"]["input_size"]
    assert info["limits"]["max_batch"] == 4 and info["limits"]["max_image_pixels"] == 250000
    assert info["model_card"].startswith("# transferkit model")
    spec = httpx.get(f"{image_server.url}/openapi.json").json()
    body = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert {"multipart/form-data", "application/json"} <= set(body)
    assert {"413", "415", "422"} <= set(spec["paths"]["/predict"]["post"]["responses"])
    assert "/health" in spec["paths"] and "/info" in spec["paths"]


def test_several_workers_answer(image_server) -> None:
    async def pids() -> set[int]:
        seen: set[int] = set()
        for _ in range(10):
            async with httpx.AsyncClient() as client:  # new connections, so both workers get some
                answers = await asyncio.gather(*[client.get(f"{image_server.url}/health") for _ in range(8)])
            seen |= {a.json()["pid"] for a in answers}
            if len(seen) >= 2:
                break
        return seen

    assert len(asyncio.run(pids())) == 2


@pytest.mark.parametrize("case", ["corrupt", "empty", "oversized_file", "too_many_pixels", "too_many_files",
                                  "far_too_many_files",
                                  "json_body", "no_content_type", "unknown_field", "unknown_query", "bad_top_k",
                                  "no_files", "text_field_as_file", "declared_too_large"])
def test_image_requests_that_are_refused(image_server, case) -> None:
    url = f"{image_server.url}/predict"
    good = _png()
    if case == "corrupt":
        answer = httpx.post(url, files=_files(good, b"not an image at all"))
        code, words = 422, ["files[1] (img1.png)", "not a readable image"]
    elif case == "empty":
        answer = httpx.post(url, files=_files(b""))
        code, words = 422, ["files[0]", "empty"]
    elif case == "oversized_file":
        answer = httpx.post(url, files=_files(os.urandom(60 * 1024)))
        code, words = 413, ["files[0]", "limit is 52,428 bytes"]
    elif case == "too_many_pixels":
        answer = httpx.post(url, files=_files(_png((600, 600), noise=False)))  # a few kB
        code, words = 413, ["600x600", "250,000 pixels"]
    elif case == "too_many_files":
        answer = httpx.post(url, files=_files(*[good] * 5))
        code, words = 413, ["5 files in one request", "limit is 4"]
    elif case == "far_too_many_files":  # refused by the form parser, before the files are kept
        answer = httpx.post(url, files=_files(*[good] * 9))
        code, words = 413, ["more than 4 files", "limit is 4"]
    elif case == "json_body":
        answer = httpx.post(url, json={"texts": ["hello"]})
        code, words = 415, ["image model", "multipart/form-data", "application/json"]
    elif case == "no_content_type":
        answer = httpx.post(url, content=good)
        code, words = 415, ["(none)"]
    elif case == "unknown_field":
        answer = httpx.post(url, files=_files(good), data={"path": "/etc/passwd"})
        code, words = 422, ["unknown form field", "'path'"]
    elif case == "unknown_query":
        answer = httpx.post(f"{url}?file=/etc/passwd", files=_files(good))
        code, words = 422, ["unknown query parameter", "'file'"]
    elif case == "bad_top_k":
        answer = httpx.post(f"{url}?top_k=9", files=_files(good))
        code, words = 422, ["top_k must be from 1 to 3"]
    elif case == "no_files":
        answer = httpx.post(url, files=_files(good, name="images"))
        code, words = 422, ["'images'"]
    elif case == "text_field_as_file":
        answer = httpx.post(url, data={"files": "cat.png"}, files=_files(good, name="files"))
        code, words = 422, ["text field, not a file"]
    else:  # a body announced larger than any allowed request is refused before it is read (raw socket: no client
        # library sends a Content-Length it does not keep)
        with socket.create_connection(("127.0.0.1", image_server.port), timeout=30) as raw:
            raw.sendall(b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=b\r\n"
                        b"Content-Length: 1000000000\r\n\r\n--b\r\n")
            reply = b""
            while b"\r\n\r\n" not in reply or not reply.rstrip().endswith(b"}"):
                chunk = raw.recv(65536)
                if not chunk:
                    break
                reply += chunk
        head, _, payload = reply.partition(b"\r\n\r\n")
        answer = httpx.Response(int(head.split()[1]), content=payload)
        code, words = 413, ["1,000,000,000 bytes"]
    assert answer.status_code == code, answer.text
    detail = answer.json()["detail"]
    assert all(w in detail for w in words), detail
    assert httpx.get(f"{image_server.url}/health").status_code == 200  # still serving


def test_text_predictions_and_refusals(text_server, models) -> None:
    from transferkit import predict

    url = f"{text_server.url}/predict"
    texts = ["a wonderful, moving film", "a dull, lifeless mess"]
    answer = httpx.post(url, json={"texts": texts, "top_k": 1}, timeout=60)
    assert answer.status_code == 200, answer.text
    reference = predict(models["text"], texts, progress=False)
    for prediction, expected in zip(answer.json()["predictions"], reference):
        assert prediction["label"] == expected["label"] and len(prediction["top_k"]) == 1
        for label, p in expected["probabilities"].items():
            assert prediction["probabilities"][label] == pytest.approx(p, abs=1e-4)
    refusals = [
        (dict(json={"texts": texts, "path": "/etc/passwd"}), 422, ["unknown field 'path'"]),
        (dict(json={"text": "one"}), 422, ["field 'texts' is required", "unknown field 'text'"]),
        (dict(json={"texts": "one text"}), 422, ["texts"]),
        (dict(json={"texts": ["ok", 3]}), 422, ["texts.1"]),
        (dict(json=["a", "b"]), 422, ["must be an object"]),
        (dict(json={"texts": []}), 422, ["empty"]),
        (dict(json={"texts": ["  "]}), 422, ["texts[0] is empty"]),
        (dict(json={"texts": ["x" * 201]}), 413, ["texts[0] is 201 characters", "limit is 200"]),
        (dict(json={"texts": ["a"] * 4}), 413, ["4 texts", "limit is 3"]),
        (dict(json={"texts": ["a"], "top_k": 0}), 422, ["top_k"]),
        (dict(content=b'{"texts": ["a",', headers={"content-type": "application/json"}), 400, ["not valid JSON"]),
        (dict(files=_files(_png())), 415, ["text model", "application/json"]),
        (dict(content=b"texts=a", headers={"content-type": "application/x-www-form-urlencoded"}), 415, ["text model"]),
    ]
    for request, code, words in refusals:
        answer = httpx.post(url, **request)
        assert answer.status_code == code, (request, answer.text)
        assert all(w in answer.json()["detail"] for w in words), (request, answer.json())


def test_concurrent_text_requests_share_batches(text_server) -> None:
    async def burst() -> list:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*[client.post(f"{text_server.url}/predict", json={"texts": [f"film {i}"]})
                                          for i in range(12)])

    before = httpx.get(f"{text_server.url}/info").json()["batching"]
    answers = asyncio.run(burst())
    assert all(a.status_code == 200 for a in answers)
    after = httpx.get(f"{text_server.url}/info").json()["batching"]
    inputs, batches = after["inputs_run"] - before["inputs_run"], after["batches_run"] - before["batches_run"]
    assert inputs == 12 and batches < 12  # 100 ms of waiting let concurrent requests run together


def test_micro_batcher_returns_each_caller_its_rows() -> None:
    from transferkit.serving.batching import MicroBatcher

    calls: list[int] = []

    def predict(items):
        calls.append(len(items))
        return np.array([[float(x), 1.0 - float(x)] for x in items])

    async def main(wait_s: float):
        batcher = MicroBatcher(predict, wait_s=wait_s, max_items=5)
        await batcher.start()
        jobs = [[0.1 * i, 0.1 * i + 0.05] if i % 2 else [0.1 * i] for i in range(6)]
        results = await asyncio.gather(*[batcher.submit(j) for j in jobs])
        await batcher.stop()
        return jobs, results

    jobs, results = asyncio.run(main(0.05))
    for job, rows in zip(jobs, results):
        assert rows[:, 0].tolist() == pytest.approx(job)
    assert sum(calls) == 9 and max(calls) <= 5 and len(calls) < 6
    calls.clear()
    jobs, results = asyncio.run(main(0.0))
    assert calls == [len(j) for j in jobs]  # no waiting: each request alone, in order


def test_onnx_runtime_matches_torch(models) -> None:
    from PIL import Image

    from transferkit.serving.predictor import Predictor

    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("TRANSFERKIT_CACHE", str(models["cache"]))
        images = [Image.open(p).convert("RGB") for p in sorted(models["images"].glob("*/*.png"))[:5]]
        torch_rows = Predictor(models["image"], runtime="torch").predict_proba(images)
        onnx = Predictor(models["image"], runtime="onnx")
        assert onnx.onnx_file.is_file() and onnx.onnx_file.parent.name == "serving"
        np.testing.assert_allclose(onnx.predict_proba(images), torch_rows, atol=1e-4)


def test_serve_refuses_bad_options_before_starting(models, tmp_path: Path) -> None:
    from test_cli import run

    proc = run("serve", str(tmp_path / "nothing"), check=False)
    assert proc.returncode == 2 and "no such model folder" in proc.stderr
    proc = run("serve", str(models["image"]), "--workers", "0", check=False)
    assert proc.returncode == 2 and "workers" in proc.stderr
    proc = run("serve", str(models["image"]), "--runtime", "tensorrt", check=False)
    assert proc.returncode == 2 and "runtime" in proc.stderr


def _fuzz_settings():
    from hypothesis import HealthCheck, settings

    return settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck))


def test_fuzzed_json_bodies_never_get_a_server_error(text_server) -> None:
    from hypothesis import example, given
    from hypothesis import strategies as st

    scalars = st.one_of(st.none(), st.booleans(), st.integers(-10, 10**6), st.floats(),
                        st.text(max_size=300))
    values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                          | st.dictionaries(st.text(max_size=8), inner, max_size=3), max_leaves=8)
    bodies = st.one_of(values, st.fixed_dictionaries({"texts": st.lists(st.text(max_size=250), max_size=5)},
                                                     optional={"top_k": values}),
                       st.dictionaries(st.sampled_from(["texts", "top_k", "path", "file"]), values, max_size=3))
    url = f"{text_server.url}/predict"

    @_fuzz_settings()
    @given(body=bodies)
    @example(body=float("inf"))
    @example(body={"texts": ["fine"], "top_k": float("nan")})
    @example(body={"texts": ["fine"], "top_k": float("-inf")})
    def check(body) -> None:
        # Python's encoder writes NaN and Infinity as bare tokens (not strict JSON); the server must still answer.
        answer = httpx.post(url, content=json.dumps(body), headers={"content-type": "application/json"}, timeout=60)
        assert answer.status_code < 500, (body, answer.status_code, answer.text)
        if answer.status_code == 200:
            for prediction in answer.json()["predictions"]:
                assert abs(sum(prediction["probabilities"].values()) - 1.0) < 1e-4
        else:
            assert answer.status_code in (400, 413, 415, 422) and answer.json()["detail"], answer.text

    check()


def test_fuzzed_uploads_and_content_types_never_get_a_server_error(image_server) -> None:
    from hypothesis import given
    from hypothesis import strategies as st

    url = f"{image_server.url}/predict"
    blobs = st.one_of(st.binary(max_size=2000), st.just(_png()), st.binary(max_size=64).map(lambda b: _png()[:40] + b))
    content_types = st.sampled_from(["image/png", "application/octet-stream", "text/plain", ""])

    @_fuzz_settings()
    @given(files=st.lists(st.tuples(blobs, content_types), min_size=0, max_size=3),
           field=st.sampled_from(["files", "file", "image"]), raw=st.one_of(st.none(), st.binary(max_size=200)),
           header=st.sampled_from(["multipart/form-data; boundary=xyz", "application/json", "image/png", "text/csv"]))
    def check(files, field, raw, header) -> None:
        if raw is None:
            answer = httpx.post(url, files=[(field, (f"f{i}", blob, kind)) for i, (blob, kind) in enumerate(files)]
                                or None, timeout=60)
        else:
            answer = httpx.post(url, content=raw, headers={"content-type": header}, timeout=60)
        assert answer.status_code < 500, (answer.status_code, answer.text)
        if answer.status_code != 200:
            assert answer.status_code in (400, 413, 415, 422) and answer.json()["detail"], answer.text

    check()
