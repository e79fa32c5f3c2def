from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from trainer.augment import AugmentConfig, augment, pure_sky_band
from trainer.data import DatasetError, index_data_dir, load_sample


def test_skyseg_index_has_the_fixed_splits(skyseg: Path) -> None:
    train = index_data_dir(skyseg, "train")
    val = index_data_dir(skyseg, "val")
    assert len(train) + len(val) == 4652
    assert Counter(r.dataset for r in val) == {"siftflow": 535, "camvid": 233, "stanford": 143, "horizon_uav": 81}
    assert not {(r.dataset, r.sample_id) for r in train} & {(r.dataset, r.sample_id) for r in val}


def test_real_sample_with_void_loads(skyseg: Path) -> None:
    ref = next(r for r in index_data_dir(skyseg, "train") if r.dataset == "camvid" and r.void is not None)
    sample = load_sample(ref)
    assert sample.image.shape == (360, 480, 3) and sample.image.dtype == np.uint8
    assert sample.mask.shape == (360, 480) and set(np.unique(sample.mask)) <= {0, 255}
    assert sample.void is not None and sample.void.dtype == bool and sample.void.any()
    small = load_sample(ref, max_short_side=180)
    assert small.image.shape[:2] == small.mask.shape == small.void.shape == (180, 240)


def test_folder_pair_layout(tiny_dataset: Path) -> None:
    refs = index_data_dir(tiny_dataset, "train")
    assert len(refs) == 12 and all(r.image.parent.name == "images" for r in refs)
    assert index_data_dir(tiny_dataset, "val") == []


def _copy_dataset(src: Path, dst: Path) -> Path:
    for sub in ("images", "masks"):
        (dst / sub).mkdir(parents=True)
        for f in sorted((src / sub).iterdir())[:3]:
            (dst / sub / f.name).write_bytes(f.read_bytes())
    return dst


def test_missing_mask_names_the_file(tiny_dataset: Path, tmp_path: Path) -> None:
    root = _copy_dataset(tiny_dataset, tmp_path / "d")
    victim = sorted((root / "masks").iterdir())[0]
    victim.unlink()
    with pytest.raises(DatasetError, match=f"without a mask.*{victim.stem}"):
        index_data_dir(root, "train")


def test_size_mismatch_and_non_binary_masks_are_named(tiny_dataset: Path, tmp_path: Path) -> None:
    root = _copy_dataset(tiny_dataset, tmp_path / "d")
    refs = index_data_dir(root, "train")
    Image.new("L", (17, 9)).save(refs[0].mask)
    with pytest.raises(DatasetError, match=rf"{refs[0].mask.name}: mask is 17x9 but image"):
        load_sample(refs[0])
    with Image.open(refs[1].image) as im:
        w, h = im.size
    Image.fromarray(np.tile(np.linspace(0, 255, w).astype(np.uint8), (h, 1))).save(refs[1].mask)
    with pytest.raises(DatasetError, match=rf"{refs[1].mask.name}: mask is not binary"):
        load_sample(refs[1])


def test_not_a_dataset_folder(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="expected sub-folders images/ and masks/"):
        index_data_dir(tmp_path, "train")


def test_augmentation_is_reproducible_and_well_formed(skyseg: Path) -> None:
    refs = [r for r in index_data_dir(skyseg, "train") if r.dataset == "siftflow"][:20]
    samples = [load_sample(r) for r in refs]
    donor = next(band for band in map(pure_sky_band, samples) if band is not None)
    cfg = AugmentConfig(sky_swap_prob=1.0, dusk_prob=0.5)
    outs = []
    for _ in range(2):
        gen = torch.Generator().manual_seed(7)
        outs.append(augment(samples[3], 320, cfg, gen, donor))
    for a, b in zip(*outs):
        assert torch.equal(a, b)
    image, mask, void = outs[0]
    assert image.shape == (3, 320, 320) and mask.shape == void.shape == (1, 320, 320)
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    other = augment(samples[3], 320, cfg, torch.Generator().manual_seed(8), donor)
    assert not torch.equal(other[0], image)


def test_no_sky_folder_split_by_house_and_screened() -> None:
    """The real interiors: rooms of one house never straddle train/val; screened photos are left out."""
    from conftest import REPO, SHARED_DATA
    from trainer.data import index_no_sky, no_sky_group, read_exclusion_list

    root = SHARED_DATA / "interiors"
    excluded = read_exclusion_list(REPO / "trainer" / "lists" / "interiors_sky_visible.txt")
    assert "34_bedroom.jpg" in excluded and len(excluded) > 50
    train, val = index_no_sky(root, "train", excluded), index_no_sky(root, "val", excluded)
    assert len(train) + len(val) == 1595 - len(excluded)
    assert 0.15 < len(val) / (len(train) + len(val)) < 0.25
    assert not {no_sky_group(r.image) for r in train} & {no_sky_group(r.image) for r in val}
    assert all(r.mask is None and r.image.name not in excluded for r in train + val)
    assert index_no_sky(root, "val", excluded) == val  # fixed split
