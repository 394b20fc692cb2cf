"""Unit checks of the renderer port's building blocks (fast, no golden frames).

- the batch-independent modulated convolution equals the reference's grouped form;
- the pooled guided resampler equals a literal statement of the reference's gather algorithm;
- attention computed in query chunks (bounded memory) equals the whole-map computation;
- the computed buffers (blur kernels, relative-position indices, shifted-window masks)
  equal brute-force constructions;
- the config round-trips through JSON and rejects inconsistent layouts;
- the two export-sensitive pieces keep a dynamic batch through a traced ONNX export.
"""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from models.recipe import read_manifest
from models.renderer import IMTRenderer, RendererConfig
from models.renderer.attention import QUERY_CHUNK, StandardAttention, query_chunks
from models.renderer.motion_transfer import GuidedResampler
from models.renderer.styled_layers import ModulatedConv2d


def _modconv(upsample: bool, seed: int) -> ModulatedConv2d:
    torch.manual_seed(seed)
    conv = ModulatedConv2d(12, 20, 3, 8, upsample=upsample)
    with torch.no_grad():
        conv.modulation.bias.normal_(1.0, 0.3)
    return conv.eval()


@pytest.mark.parametrize("upsample", [False, True])
@pytest.mark.parametrize("batch", [1, 3])
def test_modulated_conv_equals_grouped_reference_form(upsample: bool, batch: int) -> None:
    conv = _modconv(upsample, seed=batch)
    x = torch.randn(batch, 12, 9, 9)
    style = torch.randn(batch, 8)
    with torch.no_grad():
        ours = conv(x, style)
        grouped = conv.forward_grouped(x, style)
    side = 18 if upsample else 9
    assert ours.shape == (batch, 20, side, side)
    torch.testing.assert_close(ours, grouped, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("upsample", [False, True])
def test_modulated_conv_is_batch_independent(upsample: bool) -> None:
    conv = _modconv(upsample, seed=7)
    x = torch.randn(3, 12, 8, 8)
    style = torch.randn(3, 8)
    with torch.no_grad():
        batched = conv(x, style)
        singles = torch.cat([conv(x[i : i + 1], style[i : i + 1]) for i in range(3)])
    torch.testing.assert_close(batched, singles, rtol=1e-5, atol=1e-6)


def _reference_resample(
    v_high: torch.Tensor, attn_mean: torch.Tensor, ratio: int, k: int
) -> torch.Tensor:
    """The reference algorithm stated pixel by pixel: each fine pixel looks up its coarse cell,
    takes the top-k source cells of that cell's attention row, and averages the ratio x ratio
    source blocks behind them with weights softmax(scores) / ratio^2."""
    batch, channels, height, width = v_high.shape
    w_low = width // ratio
    scores, index = torch.topk(attn_mean, k=k, dim=-1)
    weights = scores.softmax(dim=-1)
    out = torch.zeros(batch, channels, height, width, dtype=v_high.dtype)
    for b in range(batch):
        for y in range(height):
            for x in range(width):
                cell = (y // ratio) * w_low + x // ratio
                acc = torch.zeros(channels, dtype=v_high.dtype)
                for j in range(k):
                    sy, sx = divmod(int(index[b, cell, j]), w_low)
                    block = v_high[
                        b, :, sy * ratio : (sy + 1) * ratio, sx * ratio : (sx + 1) * ratio
                    ]
                    acc += weights[b, cell, j] / ratio**2 * block.sum(dim=(1, 2))
                out[b, :, y, x] = acc
    return out


@pytest.mark.parametrize("top_k", [1, 2])
@pytest.mark.parametrize("ratio", [2, 4])
def test_guided_resampler_equals_reference_gather(top_k: int, ratio: int) -> None:
    torch.manual_seed(ratio * 10 + top_k)
    heads, low = 3, 4
    attn = torch.randn(2, heads, low * low, low * low).softmax(dim=-1)
    v_high = torch.randn(2, 5, low * ratio, low * ratio)
    resampler = GuidedResampler(ratio, top_k)
    expected = _reference_resample(v_high, attn.mean(dim=1), ratio, top_k)
    torch.testing.assert_close(resampler(v_high, attn), expected, rtol=1e-5, atol=1e-6)
    # One avatar (batch 1) broadcast over a batch of driving frames.
    single = v_high[:1]
    expected_b = _reference_resample(single.expand(2, -1, -1, -1), attn.mean(dim=1), ratio, top_k)
    torch.testing.assert_close(resampler(single, attn), expected_b, rtol=1e-5, atol=1e-6)


def test_query_chunks_cover_every_row_once() -> None:
    assert query_chunks(10) == [(0, 10)]
    rows = [r for a, b in query_chunks(2 * QUERY_CHUNK + 7) for r in range(a, b)]
    assert rows == list(range(2 * QUERY_CHUNK + 7))
    assert len(query_chunks(4096)) == 4096 // QUERY_CHUNK


@pytest.mark.parametrize("top_k", [1, 3])
def test_chunked_attention_equals_the_whole_map(top_k: int) -> None:
    # More rows than one chunk (and a partial last chunk) so the chunking really happens.
    torch.manual_seed(top_k)
    tokens = 2 * QUERY_CHUNK + 37
    attention = StandardAttention(16, 2).eval()
    query = torch.randn(2, tokens, 16)
    key, value = torch.randn(1, tokens, 16), torch.randn(1, tokens, 16)
    with torch.no_grad():
        key_proj, value_proj = attention.project_key(key), attention.project_value(value)
        want_out, attn = attention.attend(query, key_proj, value_proj)
        want_scores, want_index = torch.topk(attn.mean(dim=1), k=top_k, dim=-1)
        out, scores, index = attention.attend_top_k(query, key_proj, value_proj, top_k)
        fused = attention.attend_fused(query, key.expand(2, -1, -1), value.expand(2, -1, -1))
    torch.testing.assert_close(out, want_out, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(scores, want_scores, rtol=1e-5, atol=1e-7)
    assert torch.equal(index, want_index)
    torch.testing.assert_close(fused, want_out, rtol=1e-5, atol=1e-6)


def _brute_relative_position_index(window: int) -> torch.Tensor:
    n = window * window
    out = torch.empty(n, n, dtype=torch.long)
    for i in range(n):
        for j in range(n):
            dy = i // window - j // window + window - 1
            dx = i % window - j % window + window - 1
            out[i, j] = dy * (2 * window - 1) + dx
    return out


def _brute_shift_mask(side: int, window: int, shift: int) -> torch.Tensor:
    def band(p: int) -> int:
        return 0 if p < side - window else (1 if p < side - shift else 2)

    per_row = side // window
    masks = torch.empty(per_row * per_row, window * window, window * window)
    for wy in range(per_row):
        for wx in range(per_row):
            labels = [
                3 * band(wy * window + t // window) + band(wx * window + t % window)
                for t in range(window * window)
            ]
            lab = torch.tensor(labels)
            masks[wy * per_row + wx] = torch.where(lab[None, :] != lab[:, None], -100.0, 0.0)
    return masks


@pytest.fixture(scope="module")
def fresh_state() -> dict[str, torch.Tensor]:
    return IMTRenderer().state_dict()


def test_computed_buffers_equal_brute_force(
    golden_dir: Path, fresh_state: dict[str, torch.Tensor]
) -> None:
    manifest = read_manifest(golden_dir / "renderer_manifest.json")
    taps = torch.tensor([1.0, 3.0, 3.0, 1.0])
    blur = torch.outer(taps, taps) / 64.0
    window = RendererConfig().window_size
    rel_index = _brute_relative_position_index(window)
    for key in manifest.computed_keys:
        value = fresh_state[key]
        if key.endswith("num_batches_tracked"):
            assert value.dtype == torch.long and int(value) == 0
        elif key.endswith(".blur.kernel"):  # upsampling blur carries the 2x2 gain
            torch.testing.assert_close(value, blur * 4.0, rtol=0.0, atol=0.0)
        elif key.endswith(".kernel"):
            torch.testing.assert_close(value, blur, rtol=0.0, atol=0.0)
        elif key.endswith("relative_position_index"):
            assert torch.equal(value, rel_index), key
        elif key.endswith("attn_mask"):
            side = window * math.isqrt(value.shape[0])
            expected = _brute_shift_mask(side, window, window // 2)
            torch.testing.assert_close(value, expected, rtol=0.0, atol=0.0)
        else:
            pytest.fail(f"unchecked computed buffer {key}")


def test_config_defaults_and_json_round_trip() -> None:
    config = RendererConfig()
    assert config.feature_dims == (32, 64, 128, 256, 512, 512)
    assert config.spatial_dims == (256, 128, 64, 32, 16, 8)
    assert (config.num_heads, config.window_size, config.swin_res_threshold) == (8, 8, 128)
    assert config.num_coarse_levels == 4 and config.coarse_map_side == 64
    assert [config.resampler_ratio(s) for s in (128, 256)] == [2, 4]
    assert config.output_size == 512
    again = RendererConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert again == config
    changed = RendererConfig.from_dict({**config.to_dict(), "resampler_top_k": 2})
    assert changed.resampler_top_k == 2 and changed != config


def test_config_rejects_bad_layouts() -> None:
    with pytest.raises(ValueError, match="unknown"):
        RendererConfig.from_dict({"heads": 8})
    with pytest.raises(ValueError, match="one entry per level"):
        RendererConfig(feature_dims=(32, 64))
    with pytest.raises(ValueError, match="halve"):
        RendererConfig(spatial_dims=(256, 128, 64, 32, 16, 4))
    with pytest.raises(ValueError, match="divisible"):
        RendererConfig(num_heads=7)


def _export_and_run(
    module: torch.nn.Module,
    args: tuple[torch.Tensor, ...],
    names: list[str],
    dynamic: dict[str, dict[int, str]],
    path: Path,
) -> object:
    ort = pytest.importorskip("onnxruntime")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=names,
            output_names=["out"],
            dynamic_axes=dynamic,
            opset_version=17,
            dynamo=False,
        )
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


class _ConvWithStyle(torch.nn.Module):
    def __init__(self, conv: ModulatedConv2d) -> None:
        super().__init__()
        self.conv = conv

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.conv(x, style)
        return out


class _Sample(torch.nn.Module):
    def __init__(self, resampler: GuidedResampler) -> None:
        super().__init__()
        self.resampler = resampler

    def forward(self, pooled: torch.Tensor, attn: torch.Tensor) -> torch.Tensor:
        return self.resampler.sample(pooled, attn)


def test_export_keeps_dynamic_batch(tmp_path: Path) -> None:
    # Traced at batch 2, run at 1 and 3: no batch size may be frozen into the graph.
    conv = _ConvWithStyle(_modconv(True, seed=3))
    x, style = torch.randn(2, 12, 8, 8), torch.randn(2, 8)
    batch = {"x": {0: "b"}, "style": {0: "b"}, "out": {0: "b"}}
    session = _export_and_run(conv, (x, style), ["x", "style"], batch, tmp_path / "conv.onnx")
    for b in (1, 3):
        xb, sb = torch.randn(b, 12, 8, 8), torch.randn(b, 8)
        (out,) = session.run(None, {"x": xb.numpy(), "style": sb.numpy()})  # type: ignore[attr-defined]
        with torch.no_grad():
            np.testing.assert_allclose(out, conv(xb, sb).numpy(), rtol=1e-4, atol=1e-5)

    sample = _Sample(GuidedResampler(4, 1))
    pooled = torch.randn(1, 5, 4, 4)  # one avatar
    attn = torch.randn(2, 3, 16, 16).softmax(dim=-1)
    dyn = {"attn": {0: "b"}, "out": {0: "b"}}
    session = _export_and_run(sample, (pooled, attn), ["pooled", "attn"], dyn, tmp_path / "s.onnx")
    for b in (1, 3):
        ab = torch.randn(b, 3, 16, 16).softmax(dim=-1)
        (out,) = session.run(None, {"pooled": pooled.numpy(), "attn": ab.numpy()})  # type: ignore[attr-defined]
        np.testing.assert_allclose(out, sample(pooled, ab).numpy(), rtol=1e-5, atol=1e-6)


class _TopKAttention(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.attention = StandardAttention(16, 2)

    def forward(
        self, query: torch.Tensor, key: torch.Tensor, value: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        a = self.attention
        return a.attend_top_k(query, a.project_key(key), a.project_value(value), 1)


def test_exported_chunks_finish_one_before_the_next(tmp_path: Path) -> None:
    # A runtime that orders nodes by data alone (OpenVINO) must be unable to start a chunk's
    # logits before the previous chunk's `attn @ v` and head-mean pick have read its map: that
    # is what frees each 64 px map before the next is made.
    onnx = pytest.importorskip("onnx")
    torch.manual_seed(0)
    module = _TopKAttention().eval()
    tokens = 2 * QUERY_CHUNK
    args = (torch.randn(1, tokens, 16), torch.randn(1, tokens, 16), torch.randn(1, tokens, 16))
    session = _export_and_run(module, args, ["q", "k", "v"], {}, tmp_path / "a.onnx")
    graph = onnx.load(str(tmp_path / "a.onnx")).graph
    producer = {out: node for node in graph.node for out in node.output}

    def ancestors(node: object) -> set[str]:
        seen: set[str] = set()
        pending = [producer.get(name) for name in node.input]  # type: ignore[attr-defined]
        while pending:
            current = pending.pop()
            if current is None or current.name in seen:
                continue
            seen.add(current.name)
            pending.extend(producer.get(name) for name in current.input)
        return seen

    softmaxes = [n for n in graph.node if n.op_type == "Softmax"]
    assert len(softmaxes) == 2
    first_map = softmaxes[0].output[0]
    readers = {n.name for n in graph.node if first_map in n.input}
    assert len(readers) == 2  # attn @ v and the head mean
    before_second = ancestors(softmaxes[1])
    assert readers <= before_second
    assert any(n.op_type == "ArgMax" and n.name in before_second for n in graph.node)
    # And the chained graph still computes what the module does.
    got = session.run(None, {"q": args[0].numpy(), "k": args[1].numpy(), "v": args[2].numpy()})  # type: ignore[attr-defined]
    with torch.no_grad():
        want = module(*args)
    np.testing.assert_allclose(got[0], want[0].numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(got[2], want[2].numpy())
