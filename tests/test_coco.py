import io
import json
import zipfile

import numpy as np
import pytest
from conftest import sha256
from PIL import Image

from helpers.data import registry
from helpers.data.coco import (
    CocoFormatError,
    load_coco_captions,
    load_karpathy,
    read_caption_json,
    read_karpathy_split,
)


def caption_json(ids, captions_per_image=2):
    return {
        "info": {}, "licenses": [],
        "images": [{"id": i, "file_name": f"{i:012d}.jpg", "width": 8, "height": 8} for i in ids],
        "annotations": [{"id": 100 * i + k, "image_id": i, "caption": f"picture {i} number {k}."}
                        for i in ids for k in range(captions_per_image)],
    }


def jpeg_bytes(mode="RGB"):
    buffer = io.BytesIO()
    Image.fromarray(np.full((8, 8, 3), 90, np.uint8)).convert(mode).save(buffer, format="JPEG")
    return buffer.getvalue()


def write_coco(root, splits={"train": [1, 2], "val": [3]}, mode="RGB"):
    (root / "annotations").mkdir(parents=True)
    for split, ids in splits.items():
        (root / "annotations" / f"captions_{split}2017.json").write_text(json.dumps(caption_json(ids)))
        (root / f"{split}2017").mkdir()
        for i in ids:
            (root / f"{split}2017" / f"{i:012d}.jpg").write_bytes(jpeg_bytes(mode))
    return root


@pytest.fixture
def coco_mini(isolated, monkeypatch):
    write_coco(isolated / "data" / "coco-mini", mode="CMYK")
    monkeypatch.setenv("BOOK_DATA_DIR", str(isolated / "data"))
    return isolated / "data" / "coco-mini"


def test_offline_copy_loads_images_and_captions(coco_mini):
    train = load_coco_captions("train")
    location = train.location
    assert train.ids == [1, 2] and len(train) == 2 and location.source == "BOOK_DATA_DIR"
    image, captions = train[0]
    assert image.mode == "RGB" and captions == ["picture 1 number 0.", "picture 1 number 1."]
    assert train.subset([1]).references() == [["picture 2 number 0.", "picture 2 number 1."]]
    with pytest.raises(ValueError, match="caption splits"):
        load_coco_captions("test")


def test_image_id_without_a_file_is_a_clear_error(coco_mini):
    (coco_mini / "val2017" / "000000000003.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="image id 3 has captions but no image file"):
        load_coco_captions("val")


@pytest.mark.parametrize("content, message", [
    ("{not json", "not valid JSON"),
    (json.dumps({"images": []}), "missing key 'annotations'"),
    (json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "annotations": [{"image_id": 1, "bbox": [0, 0, 1, 1]}]}),
     "instances file"),
    (json.dumps({"images": [], "annotations": [{"image_id": 9, "caption": "x"}]}), "image id 9"),
    (json.dumps({"images": {}, "annotations": []}), "must be lists"),
])
def test_wrong_caption_json_is_a_clear_error(tmp_path, content, message):
    path = tmp_path / "captions.json"
    path.write_text(content)
    with pytest.raises(CocoFormatError, match=message):
        read_caption_json(path)


def karpathy_json(entries):
    return {"images": [{"cocoid": i, "split": s, "filepath": "val2014", "filename": f"COCO_val2014_{i:012d}.jpg",
                        "sentences": [{"raw": "x", "tokens": ["x"]}]} for i, s in entries], "dataset": "coco"}


def test_karpathy_split_merges_restval_into_train(tmp_path):
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(karpathy_json([(1, "train"), (2, "restval"), (3, "test"), (4, "val")])))
    assert read_karpathy_split(path) == {"train": [1, 2], "val": [4], "test": [3]}
    path.write_text(json.dumps(karpathy_json([(1, "holdout")])))
    with pytest.raises(CocoFormatError, match="unknown split"):
        read_karpathy_split(path)
    path.write_text(json.dumps({"images": [{"split": "train", "id": 1}]}))
    with pytest.raises(CocoFormatError, match="cocoid"):
        read_karpathy_split(path)


def zipped(members: dict[str, bytes], path):
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return path


def test_full_coco_and_karpathy_split_download_path(isolated, register_temp):
    """The gpu profile's path: official archives fetched (here from file:// URLs), checked, unpacked."""
    origin = isolated / "origin"
    origin.mkdir()
    annotations = zipped({f"annotations/captions_{s}2017.json": json.dumps(caption_json(ids)).encode()
                          for s, ids in {"train": [1, 2], "val": [3]}.items()}, origin / "annotations_trainval2017.zip")
    train = zipped({f"train2017/{i:012d}.jpg": jpeg_bytes() for i in (1, 2)}, origin / "train2017.zip")
    val = zipped({"val2017/000000000003.jpg": jpeg_bytes("L")}, origin / "val2017.zip")
    split = zipped({"dataset_coco.json": json.dumps(karpathy_json([(1, "train"), (2, "restval"), (3, "test")])).encode()},
                   origin / "caption_datasets.zip")

    def remote(path):
        return registry.RemoteFile(path.name, (path.as_uri(),), sha256=sha256(path.read_bytes()), archive=True)

    real = registry.spec("coco")
    assert {f.filename for f in real.files} == {"annotations_trainval2017.zip", "train2017.zip", "val2017.zip"}
    assert registry.spec("coco-karpathy").files[0].filename == "caption_datasets.zip"
    register_temp(registry.DatasetSpec("coco", real.title, real.homepage, real.licence,
                                       tuple(remote(p) for p in (annotations, train, val))))
    register_temp(registry.DatasetSpec("coco-karpathy", "k", "h", "l", (remote(split),)))

    test = load_karpathy("test")

    location = test.location
    assert test.ids == [3] and location.source == "download" and test.image(0).mode == "RGB"
    karpathy_train = load_karpathy("train")
    assert karpathy_train.ids == [1, 2] and len(karpathy_train.references()[1]) == 2
    full_val = load_coco_captions("val", full=True)
    again = full_val.location
    assert full_val.ids == [3] and again.source == "cache"
    with pytest.raises(ValueError, match="Karpathy"):
        load_karpathy("restval")


def test_real_coco_mini(shared_data):
    train = load_coco_captions("train")
    val = load_coco_captions("val")
    assert len(train) == 80 and len(val) == 79
    assert all(len(c) >= 5 for c in train.references())
