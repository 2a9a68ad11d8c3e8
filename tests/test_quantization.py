"""Int8 storage (gear_core.quantization): hand-computed quantisation, state dicts, `gear export --dtype int8`."""

import json
import re
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file

import gear_core
from gear_core import GeARModel
from gear_core.cli import main
from gear_core.files import CHECKSUMS_FILE, CorruptFileError
from gear_core.quantization import (
    SCALE_SUFFIX,
    CheckpointError,
    dequantize_rows,
    dequantize_state_dict,
    quantize_rows,
    quantize_state_dict,
)

# ---- pure functions -------------------------------------------------------------------------------------


def test_a_2x3_matrix_quantises_as_computed_by_hand():
    weight = torch.tensor([[0.5, -1.27, 0.1], [2.54, 1.0, -0.3]])
    q, scale = quantize_rows(weight)
    # row 0: max |w| = 1.27, scale = 1.27 / 127 = 0.01 -> 0.5 / 0.01 = 50, -1.27 / 0.01 = -127, 0.1 / 0.01 = 10
    # row 1: max |w| = 2.54, scale = 0.02 -> 127, 50, -15
    assert q.dtype == torch.int8 and scale.dtype == torch.float32 and scale.shape == (2,)
    assert q.tolist() == [[50, -127, 10], [127, 50, -15]]
    torch.testing.assert_close(scale, torch.tensor([0.01, 0.02]))
    torch.testing.assert_close(dequantize_rows(q, scale), weight)


def test_values_between_steps_round_to_the_nearest_step():
    q, scale = quantize_rows(torch.tensor([[1.0, 0.3, -0.26]]))
    # scale = 1 / 127; 0.3 * 127 = 38.1 -> 38; -0.26 * 127 = -33.02 -> -33
    assert q.tolist() == [[127, 38, -33]]
    torch.testing.assert_close(dequantize_rows(q, scale), torch.tensor([[1.0, 38 / 127, -33 / 127]]))


def test_a_zero_row_gets_scale_zero_and_comes_back_as_zeros():
    q, scale = quantize_rows(torch.tensor([[0.0, 0.0, 0.0], [0.0, -0.5, 0.25]]))
    assert q.tolist() == [[0, 0, 0], [0, -127, 64]]  # 0.25 / (0.5 / 127) = 63.5 -> 64 (half to even)
    assert scale[0].item() == 0.0
    restored = dequantize_rows(q, scale)
    assert torch.isfinite(restored).all() and restored[0].tolist() == [0.0, 0.0, 0.0]


def test_round_trip_error_is_at_most_half_a_step_per_element_and_an_outlier_stays_in_its_row():
    torch.manual_seed(0)
    weight = torch.randn(64, 48) * 0.05
    weight[3, 7] = 40.0  # an outlier
    q, scale = quantize_rows(weight)
    error = (dequantize_rows(q, scale) - weight).abs()
    assert (error <= scale[:, None] / 2 + 1e-7).all()
    # per-row scales: only row 3 pays for the outlier
    torch.testing.assert_close(scale[3], torch.tensor(40.0 / 127))
    others = torch.cat([scale[:3], scale[4:]])
    assert (others < 0.3 / 127).all()


def test_quantize_rows_refuses_what_is_not_a_float_matrix():
    for bad in (torch.ones(3), torch.ones(2, 2, 2), torch.ones(2, 2, dtype=torch.int64)):
        with pytest.raises(ValueError):
            quantize_rows(bad)


def test_state_dict_quantises_large_matrices_only_and_round_trips():
    torch.manual_seed(0)
    state = {
        "layer.weight": torch.randn(80, 64),
        "layer.bias": torch.randn(80),
        "norm.weight": torch.ones(64, dtype=torch.float16),
        "token_type.weight": torch.randn(2, 64),  # 128 elements < min_elements: stays float
        "temperature": torch.tensor(0.07),
        "position_ids": torch.arange(5),
    }
    stored = quantize_state_dict(state, min_elements=4096)
    assert list(stored) == [
        "layer.weight",
        "layer.weight" + SCALE_SUFFIX,
        "layer.bias",
        "norm.weight",
        "token_type.weight",
        "temperature",
        "position_ids",
    ]
    assert stored["layer.weight"].dtype == torch.int8 and stored["layer.weight" + SCALE_SUFFIX].shape == (80,)
    for name in ("layer.bias", "norm.weight", "token_type.weight", "temperature"):  # untouched, kept as float32
        assert stored[name].dtype == torch.float32
        assert torch.equal(stored[name], state[name].float())
    assert torch.equal(stored["position_ids"], state["position_ids"])

    restored = dequantize_state_dict(stored)
    assert list(restored) == list(state)
    scale = stored["layer.weight" + SCALE_SUFFIX]
    assert ((restored["layer.weight"] - state["layer.weight"]).abs() <= scale[:, None] / 2 + 1e-6).all()
    assert restored["temperature"].shape == () and restored["position_ids"].dtype == torch.int64


def test_dequantize_state_dict_names_a_missing_or_misshapen_scale():
    q, scale = quantize_rows(torch.randn(4, 3))
    with pytest.raises(CheckpointError, match=r"w is int8 but has no w\.int8_scale"):
        dequantize_state_dict({"w": q})
    with pytest.raises(CheckpointError, match=r"w: scale of shape \(3,\)"):
        dequantize_state_dict({"w": q, "w" + SCALE_SUFFIX: scale[:3]})
    with pytest.raises(CheckpointError, match="without their int8 matrix"):
        dequantize_state_dict({"v" + SCALE_SUFFIX: scale})


# ---- folders: gear export --dtype int8 and GeARModel.from_pretrained --------------------------------------


def _export_int8(model, tmp_path, max_shard_size="300KB") -> Path:
    model.save_pretrained(tmp_path / "trained")
    out = tmp_path / "int8"
    assert (
        main(["export", str(tmp_path / "trained"), str(out), "--dtype", "int8", "--max-shard-size", max_shard_size])
        == 0
    )
    return out


@pytest.fixture
def tied_model(tiny_encoder_dir):
    torch.manual_seed(0)
    return GeARModel.from_encoder(
        tiny_encoder_dir,
        shared_encoder=True,
        share_decoder_embeddings=True,
        decoder_num_layers=1,
        decoder_init="encoder",
        ranking_layer=-1,
        max_document_length=48,
        document_stride=8,
        max_query_length=16,
        max_target_length=12,
        queue_size=16,
    ).eval()


def test_export_int8_writes_small_shards_an_index_and_the_storage_format(tied_model, tmp_path, capsys):
    out = _export_int8(tied_model, tmp_path)
    assert "as int8" in capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    assert config["storage_dtype"] == "int8"
    assert (out / "tokenizer.json").is_file()
    index = json.loads((out / "model.safetensors.index.json").read_text())
    assert index["metadata"]["storage_dtype"] == "int8"
    shards = sorted(out.glob("*.safetensors"))
    assert len(shards) > 1 and set(index["weight_map"].values()) == {p.name for p in shards}
    assert not [p for p in out.iterdir() if p.suffix in {".bin", ".pt", ".pth", ".ckpt", ".pkl"}]
    names = []
    for shard in shards:
        with safe_open(shard, "pt") as f:
            here = list(f.keys())
            tensors = {k: f.get_tensor(k) for k in here}
        names += here
        # a shard stays under the limit unless it holds a single tensor larger than the limit (+ its scale)
        assert shard.stat().st_size <= 300_000 + 10_000 or len([k for k in tensors if SCALE_SUFFIX not in k]) == 1
        for name, tensor in tensors.items():
            if name.endswith(SCALE_SUFFIX):
                assert tensor.dtype == torch.float32 and tensor.dim() == 1
            elif tensor.dim() == 2 and tensor.numel() >= 4096:
                assert tensor.dtype == torch.int8 and name + SCALE_SUFFIX in index["weight_map"]
            elif tensor.is_floating_point():
                assert tensor.dtype == torch.float32
    # tied weights are stored once, under the query encoder's name
    embeddings = "query_encoder.embeddings.word_embeddings.weight"
    assert embeddings in names and "decoder.bert.embeddings.word_embeddings.weight" not in names
    assert "decoder.cls.predictions.decoder.weight" not in names


def test_an_int8_folder_loads_as_float32_within_half_a_step_with_tied_weights(tied_model, tmp_path):
    out = _export_int8(tied_model, tmp_path)
    loaded = GeARModel.from_pretrained(out)
    assert not loaded.training and loaded.tokenizer is not None
    assert {p.dtype for p in loaded.parameters()} == {torch.float32}
    assert loaded.config.storage_dtype is None  # the loaded model computes (and would save) in float32
    state = loaded.state_dict(keep_vars=True)
    embeddings = state["query_encoder.embeddings.word_embeddings.weight"]
    assert state["decoder.bert.embeddings.word_embeddings.weight"] is embeddings
    assert state["decoder.cls.predictions.decoder.weight"] is embeddings
    stored = {}
    for shard in out.glob("*.safetensors"):
        stored.update(load_file(shard))
    for name, original in tied_model.state_dict().items():
        if name + SCALE_SUFFIX in stored:
            bound = stored[name + SCALE_SUFFIX][:, None] / 2 + 1e-6
            assert ((state[name] - original).abs() <= bound).all(), name
        elif name in stored:
            assert torch.equal(state[name], original), name
    document = "Paris is the capital of France. It has many museums."
    cosine = (
        torch.from_numpy(loaded.encode_documents([document]))
        * torch.from_numpy(tied_model.encode_documents([document]))
    ).sum()
    assert cosine > 0.99
    assert loaded.rank_sentences("capital", document)

    # saved again with save_pretrained it is a plain float32 folder
    loaded.save_pretrained(tmp_path / "again")
    assert json.loads((tmp_path / "again" / "config.json").read_text()).get("storage_dtype") is None
    again = GeARModel.from_pretrained(tmp_path / "again")
    for name, tensor in loaded.state_dict().items():
        assert torch.equal(again.state_dict()[name], tensor), name


def test_export_int8_without_shared_embeddings(tiny_model, tmp_path):
    out = _export_int8(tiny_model, tmp_path, max_shard_size="15MB")
    assert (out / "model.safetensors").is_file() and not (out / "model.safetensors.index.json").exists()
    loaded = GeARModel.from_pretrained(out)
    assert loaded.state_dict().keys() == tiny_model.state_dict().keys()
    from transformers import AutoModel

    auto = AutoModel.from_pretrained(out)  # passes hub arguments (revision, ...) that a local folder ignores
    assert isinstance(auto, GeARModel) and torch.equal(auto.temperature, loaded.temperature)


def test_a_reader_added_to_an_int8_folder_starts_from_the_encoders_top_layers(tiny_model, tmp_path):
    # How the decoder stage adds a reader to the shipped model (config_overrides on an int8 folder).
    out = _export_int8(tiny_model, tmp_path, max_shard_size="15MB")
    loaded = GeARModel.from_pretrained(out, decoder_memory="query_and_document", decoder_reader_layers=1)
    top = loaded.query_encoder.encoder.layer[-1]
    assert torch.equal(loaded.reader[0].layer.intermediate.dense.weight, top.intermediate.dense.weight)
    assert torch.equal(loaded.reader[0].crossattention.query.bias, top.attention.self.query.bias)
    assert torch.equal(loaded.reader[0].crossattention.LayerNorm.weight, top.attention.output.LayerNorm.weight)
    assert not loaded.reader_output.weight.any()  # the decoder reads what it read before, until training moves it


def _largest_shard(folder: Path) -> Path:
    return max(folder.glob("*.safetensors"), key=lambda p: p.stat().st_size)


def test_a_truncated_or_corrupt_shard_is_named(tied_model, tmp_path):
    out = _export_int8(tied_model, tmp_path)
    shard = _largest_shard(out)
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptFileError, match=re.escape(f"{shard.name} is damaged")):  # its checksum
        GeARModel.from_pretrained(out)
    (out / CHECKSUMS_FILE).unlink()  # without checksums: refused, and unchecked the safetensors reader names it
    with pytest.raises(CorruptFileError, match="records no checksums"):
        GeARModel.from_pretrained(out)
    with pytest.raises(CheckpointError, match=re.escape(f"{shard.name} is corrupt or truncated")):
        GeARModel.from_pretrained(out, verify=False)
    shard.write_bytes(b"\x00" * 64)
    with pytest.raises(CheckpointError, match=re.escape(f"{shard.name} is corrupt or truncated")):
        GeARModel.from_pretrained(out, verify=False)


def test_a_missing_shard_is_named(tied_model, tmp_path):
    out = _export_int8(tied_model, tmp_path)
    shard = _largest_shard(out)
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"{shard.name} is missing")):
        GeARModel.from_pretrained(out)


def test_a_scale_that_does_not_fit_its_matrix_is_named_with_its_file(tied_model, tmp_path):
    out = _export_int8(tied_model, tmp_path)
    index = json.loads((out / "model.safetensors.index.json").read_text())["weight_map"]
    name = "query_encoder.embeddings.word_embeddings.weight" + SCALE_SUFFIX  # the tiny model's Linears are < 4096
    shard = out / index[name]
    tensors = load_file(shard)
    tensors[name] = tensors[name][:-1]
    save_file(tensors, shard, metadata={"format": "pt"})
    (out / CHECKSUMS_FILE).unlink()  # unchecked, it reaches the shape check (else the changed file is refused first)
    with pytest.raises(CheckpointError, match=re.escape(shard.name) + r": .*word_embeddings\.weight: scale of shape"):
        GeARModel.from_pretrained(out, verify=False)


def test_storage_dtype_is_not_a_free_setting(tiny_model, tmp_path, capsys):
    tiny_model.save_pretrained(tmp_path / "trained")
    assert main(["export", str(tmp_path / "trained"), str(tmp_path / "x"), "--set", "storage_dtype=int8"]) == 2
    assert "--dtype int8" in capsys.readouterr().err


def test_the_shipped_model_is_stored_as_int8_in_small_shards():
    folder = Path(gear_core.DEFAULT_MODEL)
    assert json.loads((folder / "config.json").read_text())["storage_dtype"] == "int8"
    index = json.loads((folder / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"].values()) == {p.name for p in folder.glob("*.safetensors")}
    assert all(p.stat().st_size <= 15_000_000 for p in folder.glob("*.safetensors"))
    assert sum(p.stat().st_size for p in folder.iterdir()) <= 40_000_000  # the tracked-size budget (v1.5: 39.7 MB)
