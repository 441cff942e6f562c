"""The book-sized data archives: sha256, size and contents (generated).

Written by `python -m helpers data pack --write-registry`: do not edit.
"""

REPOSITORY = "https://github.com/compressed-images-book/compressed-images-book"
RELEASE = "data-v1"
ARCHIVES: dict[str, dict] = {
    "coco-mini": {
        "filename": "coco-mini.tar.gz",
        "sha256": "64b3a5172357ccb1a10d021fc01fc2a9ef5979cca556a8e128961868a8261fee",
        "size": 25985159,
        "files": 164,
        "unpacked_bytes": 26719627,
        "top": {
            "README.md": "11c85ecb8ab0a54d",
            "annotations": None,
            "train2017": None,
            "val2017": None,
        },
    },
    "fashion-mnist": {
        "filename": "fashion-mnist.tar.gz",
        "sha256": "ceca369c8c32eebce083ecede727281e5a4a6f348e709ef0d13df01fcfb7d43d",
        "size": 30890534,
        "files": 5,
        "unpacked_bytes": 30880743,
        "top": {
            "README.md": "d6e50a6b23eef3bd",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a9",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5",
            "train-images-idx3-ubyte.gz": "3aede38d61863908",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560",
        },
    },
    "food": {
        "filename": "food.tar.gz",
        "sha256": "e399ad4f00f3a822da6fb83047e1d49f44566350e50116bfc33bdb40909a0edf",
        "size": 13133294,
        "files": 1602,
        "unpacked_bytes": 13959852,
        "top": {
            "README.md": "65a4c2a7cca99291",
            "food101_10": None,
            "license_agreement.txt": "48c39411ce18a57f",
        },
    },
    "frames": {
        "filename": "frames.tar.gz",
        "sha256": "58a76e6850311dee18781d4f1177807eb31989b240bbebf5adddbebdb6414b09",
        "size": 11751384,
        "files": 239,
        "unpacked_bytes": 11861412,
        "top": {
            "README.md": "d94c452fba1b8a87",
            "big_buck_bunny": None,
        },
    },
    "imagenette": {
        "filename": "imagenette.tar.gz",
        "sha256": "5b5f4b53f8f7b36ed914918dd21fcecb012299f7ae41ac4be17c2f33a37f3063",
        "size": 25459892,
        "files": 2001,
        "unpacked_bytes": 26509396,
        "top": {
            "README.md": "6df7200b4653559e",
            "train": None,
            "val": None,
        },
    },
    "mnist": {
        "filename": "mnist.tar.gz",
        "sha256": "b53729b0b80c060856a50f637bd31607ddfbf8f8fa948991f0fa445d4bb77e77",
        "size": 1655606,
        "files": 3,
        "unpacked_bytes": 1654943,
        "top": {
            "README.md": "f1ab7a50dce7b295",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6d",
        },
    },
    "mvtec": {
        "filename": "mvtec.tar.gz",
        "sha256": "dc7cd24557f14a91f7d68dc0003a7a57e17352076c502f2e23accdb370c4e576",
        "size": 53063347,
        "files": 603,
        "unpacked_bytes": 53024225,
        "top": {
            "PAIRING.csv": "e886b204076437fc",
            "README.md": "d52145cce7e5a9c3",
            "license.txt": "a355a57937552790",
            "readme.txt": "60222d7e42a41e6e",
            "screw": None,
        },
    },
}
