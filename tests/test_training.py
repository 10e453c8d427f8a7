"""Training on real shared images: the loss falls, resume continues exactly, and the CLI runs end to end."""

from __future__ import annotations

import json
from contextlib import nullcontext
from pathlib import Path

import pytest
import torch

from posapl.checkpoint import load_checkpoint
from posapl.cli import build_parser, main, settings_from_args
from training import trainer
from training.settings import TrainSettings
from training.trainer import train


@pytest.fixture(autouse=True)
def one_thread():
    """Two intra-op threads on a shared 2-core machine make tiny-model steps many times slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def splits(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Small annotation files over the real RSICD images: 8 train images x 4 captions (HarMA train format,
    absolute image paths), and 10-image val and test files cut from the real test split."""
    folder = tmp_path_factory.mktemp("splits")
    rsicd = data_dir / "rsicd"
    names = (rsicd / "train_filename.txt").read_text().split()
    captions = (rsicd / "train_caps.txt").read_text().splitlines()
    rows = [
        {"image": str(rsicd / "train" / name), "caption": captions[5 * i + k], "image_id": i}
        for i, name in enumerate(names[:8])
        for k in range(4)
    ]
    (folder / "train.json").write_text(json.dumps(rows))
    records = json.loads((rsicd / "rsicd_test.json").read_text())
    for name, part in (("val", records[:10]), ("test", records[10:20])):
        (folder / f"{name}.json").write_text(
            json.dumps([{"image": str(rsicd / r["image"]), "caption": r["caption"]} for r in part])
        )
    return {name: folder / f"{name}.json" for name in ("train", "val", "test")}


def _settings(splits: dict[str, Path], arch: Path, out: Path, **overrides) -> TrainSettings:
    values = dict(
        preset="rsicd", arch=str(arch), pretrained="random", train=splits["train"], val=splits["val"],
        epochs=3, batch_size=16, lr=2e-3, out=out, device="cpu", num_workers=0, progress=False, threads=1,
        pos_cache=out.parent / "pos-tags.json",
    )
    return TrainSettings(**(values | overrides))


def test_train_loss_falls_and_the_run_directory_is_complete(splits, tiny_arch_path, tmp_path, pos_tagger) -> None:
    out = tmp_path / "run"
    result = train(_settings(splits, tiny_arch_path, out, test=splits["test"]), pos_tagger)
    assert len(result.epoch_losses) == 3
    assert result.epoch_losses[-1] < result.epoch_losses[0]

    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log[:3]] == [1, 2, 3] and log[3]["event"] == "test"
    best = max(log[:3], key=lambda r: r["val"]["r_mean"])
    assert result.best_epoch == best["epoch"] == log[3]["epoch"]
    assert result.val == best["val"] and result.test == log[3]["test"]
    assert set(result.test) == {"txt_r1", "txt_r5", "txt_r10", "img_r1", "img_r5", "img_r10", "r_mean"}
    assert json.loads((out / "results.json").read_text())["best_epoch"] == result.best_epoch
    # Only the latest and the best epoch are kept; best/ is a loadable adapters-only checkpoint.
    assert {p.name for p in out.glob("epoch-*")} == {f"epoch-{n:03d}" for n in {3, result.best_epoch}}
    model = load_checkpoint(out / "best")
    assert model.fingerprint() == json.loads((out / f"epoch-{result.best_epoch:03d}" / "config.json").read_text())[
        "fingerprint"
    ]
    assert sum(f.stat().st_size for f in (out / "best").iterdir()) < 20_000_000
    assert (out.parent / "pos-tags.json").is_file()


def test_resume_continues_exactly_where_an_interrupted_run_stopped(
    splits, tiny_arch_path, tmp_path, monkeypatch, pos_tagger
) -> None:
    reference = train(_settings(splits, tiny_arch_path, tmp_path / "straight", epochs=2, batch_size=32), pos_tagger)

    calls = {"n": 0}
    evaluate = trainer.evaluate

    def crash_in_epoch_two(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return evaluate(*args, **kwargs)

    out = tmp_path / "interrupted"
    monkeypatch.setattr(trainer, "evaluate", crash_in_epoch_two)
    with pytest.raises(KeyboardInterrupt):
        train(_settings(splits, tiny_arch_path, out, epochs=2, batch_size=32), pos_tagger)
    assert [p.name for p in out.glob("epoch-*")] == ["epoch-001"]
    monkeypatch.setattr(trainer, "evaluate", evaluate)
    resumed = train(_settings(splits, tiny_arch_path, out, epochs=2, batch_size=32), pos_tagger)
    assert resumed.epoch_losses == reference.epoch_losses
    assert resumed.val == reference.val

    with pytest.raises(trainer.ResumeError, match="lr"):
        train(_settings(splits, tiny_arch_path, out, epochs=2, batch_size=32, lr=1e-4), pos_tagger)
    with pytest.raises(trainer.ResumeError, match="autocontrast, precision"):
        train(_settings(splits, tiny_arch_path, out, epochs=2, batch_size=32, precision="bf16",
                        autocontrast="fixed"), pos_tagger)


def test_training_needs_a_validation_split(splits, tiny_arch_path, tmp_path) -> None:
    with pytest.raises(ValueError, match="--val"):
        train(_settings(splits, tiny_arch_path, tmp_path / "run", val=None))


def test_cli_train_then_eval(splits, tiny_arch_path, tmp_path, capsys) -> None:
    out = tmp_path / "run"
    common = ["--arch", str(tiny_arch_path), "--pretrained", "random", "--device", "cpu", "--num-workers", "0",
              "--threads", "1", "--no-progress", "--pos-cache", str(tmp_path / "tags.json")]
    code = main(["train", "--preset", "rsitmd", "--train", str(splits["train"]), "--val", str(splits["val"]),
                 "--test", str(splits["test"]), "--epochs", "1", "--batch-size", "32", "--out", str(out), *common])
    assert code == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["best_epoch"] == 1 and printed["checkpoint"] == str(out / "best")

    results = tmp_path / "results.json"
    code = main(["eval", "--checkpoint", str(out / "best"), "--split", str(splits["test"]), "--out", str(results),
                 *common])
    assert code == 0
    metrics = json.loads(results.read_text())
    assert metrics == json.loads(capsys.readouterr().out) == printed["test"]

    code = main(["eval", "--zero-shot", "--preset", "rsitmd", "--split", str(splits["val"]), "--rerank", "all",
                 *common])
    assert code == 0
    per_method = json.loads(capsys.readouterr().out)
    assert set(per_method) == {"none", "multivariate", "reciprocal"}
    assert all(set(m) == set(metrics) for m in per_method.values())

    code = main(["eval", "--zero-shot", "--preset", "rsitmd", "--split", str(splits["val"]), "--rerank", "reciprocal",
                 "--reciprocal-k", "5", "--reciprocal-alpha", "0.3", "--tune-reciprocal", *common])
    assert code == 0
    tuned = json.loads(capsys.readouterr().out)
    assert set(tuned) == {"reciprocal", "reciprocal_tuning"}
    row = next(r for r in tuned["reciprocal_tuning"]["grid"] if r["k"] == 5 and r["alpha"] == 0.3)
    assert tuned["reciprocal"] == {k: v for k, v in row.items() if k not in ("k", "alpha")}


def test_cli_reports_bad_input_without_a_traceback(tmp_path, tiny_arch_path, capsys) -> None:
    missing = tmp_path / "missing.json"
    code = main(["eval", "--zero-shot", "--split", str(missing), "--arch", str(tiny_arch_path),
                 "--pretrained", "random"])
    assert code == 1
    assert f"{missing} does not exist" in capsys.readouterr().err
    assert main(["train", "--train", str(missing), "--val", str(missing), "--epochs", "0"]) == 2


def _record_batches(monkeypatch) -> list[tuple[int, torch.dtype]]:
    """Record the size and dtype of every batch the loss sees."""
    seen = []
    loss = trainer.posapl_loss

    def recording(image_feat, text_feat, *args, **kwargs):
        seen.append((image_feat.shape[0], image_feat.dtype))
        return loss(image_feat, text_feat, *args, **kwargs)

    monkeypatch.setattr(trainer, "posapl_loss", recording)
    return seen


def test_defaults_drop_the_last_partial_batch_and_train_in_float32(
    splits, tiny_arch_path, tmp_path, monkeypatch, pos_tagger
) -> None:
    defaults = TrainSettings()
    assert (defaults.drop_last, defaults.precision) == (True, "fp32")
    assert (defaults.autocontrast, defaults.sharpness) == ("reference", "reference")
    assert isinstance(trainer.precision_context(torch.device("cuda"), defaults.precision), nullcontext)

    seen = _record_batches(monkeypatch)
    out = tmp_path / "run"
    train(_settings(splits, tiny_arch_path, out, epochs=1, batch_size=12), pos_tagger)  # 32 pairs: 12 + 12 (+ 8)
    assert seen == [(12, torch.float32), (12, torch.float32)]
    log = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert log["lr"] == pytest.approx(0.0, abs=1e-12)  # the cosine schedule spans exactly the steps taken

    with pytest.raises(ValueError, match="no full batch of 64"):
        train(_settings(splits, tiny_arch_path, tmp_path / "big", epochs=1, batch_size=64), pos_tagger)


def test_options_keep_the_last_batch_and_train_under_bf16_autocast(
    splits, tiny_arch_path, tmp_path, monkeypatch, pos_tagger
) -> None:
    seen = _record_batches(monkeypatch)
    out = tmp_path / "run"
    train(_settings(splits, tiny_arch_path, out, epochs=1, batch_size=12, drop_last=False, precision="bf16",
                    autocontrast="fixed", sharpness="fixed"), pos_tagger)
    assert seen == [(12, torch.bfloat16), (12, torch.bfloat16), (8, torch.bfloat16)]
    log = json.loads((out / "log.jsonl").read_text().splitlines()[0])
    assert log["lr"] == pytest.approx(0.0, abs=1e-12)


def test_cli_recipe_options_reach_the_settings() -> None:
    args = build_parser().parse_args(["train", "--autocontrast", "fixed", "--sharpness", "fixed", "--precision",
                                      "bf16", "--keep-last-batch"])
    settings = settings_from_args(TrainSettings, args)
    assert (settings.autocontrast, settings.sharpness, settings.precision, settings.drop_last) == (
        "fixed", "fixed", "bf16", False)
    defaults = settings_from_args(TrainSettings, build_parser().parse_args(["train"]))
    assert (defaults.autocontrast, defaults.sharpness, defaults.precision, defaults.drop_last) == (
        "reference", "reference", "fp32", True)
