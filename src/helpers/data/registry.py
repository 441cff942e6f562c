"""The one registry of downloadable dataset files: name -> official URL(s) and checksum.

Each dataset the book reads is listed once here. ``helpers.data.store`` resolves every
file through this table, so a URL or checksum is never repeated in a chapter.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class RemoteFile:
    """One file of a dataset as its publisher distributes it."""

    filename: str
    urls: tuple[str, ...]  # official source first, then mirrors
    sha256: str | None = None
    md5: str | None = None  # only where the publisher gives no sha256
    size: int | None = None  # bytes, for progress bars and early truncation checks
    archive: bool = False  # unpack into the dataset's cache folder after download

    def __post_init__(self) -> None:
        if not (self.sha256 or self.md5):
            raise ValueError(f"{self.filename}: a registry entry needs a sha256 (or the publisher's md5)")
        if not self.urls:
            raise ValueError(f"{self.filename}: a registry entry needs at least one URL")


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its files, where it comes from, and its terms."""

    name: str
    title: str
    homepage: str
    licence: str
    files: tuple[RemoteFile, ...]
    archive_root: str = ""  # folder inside the unpacked archive(s) that holds the official layout
    notes: str = ""
    extra: dict = field(default_factory=dict)

    def file(self, filename: str) -> RemoteFile:
        """The registered file called ``filename``."""
        for f in self.files:
            if f.filename == filename:
                return f
        raise KeyError(f"dataset {self.name!r} has no registered file {filename!r}; it has {[f.filename for f in self.files]}")


_MNIST_MIRRORS = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
_FASHION_MIRRORS = ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",)


def _idx_files(mirrors: tuple[str, ...], sums: dict[str, tuple[str, int]]) -> tuple[RemoteFile, ...]:
    return tuple(
        RemoteFile(filename=name, urls=tuple(m + name for m in mirrors), sha256=sha, size=size)
        for name, (sha, size) in sums.items()
    )


REGISTRY: dict[str, DatasetSpec] = {}


def register(spec: DatasetSpec) -> DatasetSpec:
    """Add a dataset to the registry (names are unique)."""
    if spec.name in REGISTRY:
        raise ValueError(f"dataset {spec.name!r} is registered twice")
    REGISTRY[spec.name] = spec
    return spec


def spec(name: str) -> DatasetSpec:
    """The registered dataset called ``name``."""
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown dataset {name!r}; registered datasets: {sorted(REGISTRY)}") from None


register(DatasetSpec(
    name="mnist",
    title="MNIST handwritten digits (LeCun, Cortes, Burges)",
    homepage="http://yann.lecun.com/exdb/mnist/",
    licence="no formal licence from the authors; commonly redistributed under CC BY-SA 3.0",
    files=_idx_files(_MNIST_MIRRORS, {
        "train-images-idx3-ubyte.gz": ("440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609", 9912422),
        "train-labels-idx1-ubyte.gz": ("3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c", 28881),
        "t10k-images-idx3-ubyte.gz": ("8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6", 1648877),
        "t10k-labels-idx1-ubyte.gz": ("f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6", 4542),
    }),
))

register(DatasetSpec(
    name="fashion-mnist",
    title="Fashion-MNIST (Xiao, Rasul, Vollgraf 2017)",
    homepage="https://github.com/zalandoresearch/fashion-mnist",
    licence="MIT",
    files=_idx_files(_FASHION_MIRRORS, {
        "train-images-idx3-ubyte.gz": ("3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84", 26421880),
        "train-labels-idx1-ubyte.gz": ("a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845", 29515),
        "t10k-images-idx3-ubyte.gz": ("346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073", 4422102),
        "t10k-labels-idx1-ubyte.gz": ("67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5", 5148),
    }),
))

register(DatasetSpec(
    name="imagenette",
    title="Imagenette 2 (160 px): 10 easy ImageNet classes (fast.ai)",
    homepage="https://github.com/fastai/imagenette",
    licence="ImageNet terms of access (non-commercial research and education)",
    archive_root="imagenette2-160",
    files=(RemoteFile(
        "imagenette2-160.tgz", ("https://s3.amazonaws.com/fast-ai-imageclas/imagenette2-160.tgz",),
        md5="e793b78cc4c9e9a4ccc0c1155377a412",  # the publisher gives none; this is torchvision's
        archive=True,
    ),),
    notes="Offline copy: 150 train + 50 val per class, 160x160 (see its README).",
))

# COCO publishes no checksums. The md5s of the three 2017 archives are the ones MLCommons' and
# NVIDIA's public download scripts check (e.g. mlcommons/inference, the Mask R-CNN reference).
# The md5 of Karpathy's caption_datasets.zip is the one the mlverse torchvision package checks.
_COCO = "http://images.cocodataset.org/"
register(DatasetSpec(
    name="coco",
    title="Microsoft COCO 2017: train/val images and caption annotations",
    homepage="https://cocodataset.org/#download",
    licence="annotations CC BY 4.0 (COCO Consortium); images under their Flickr licences and the COCO terms of use",
    files=(
        RemoteFile("annotations_trainval2017.zip", (_COCO + "annotations/annotations_trainval2017.zip",),
                   md5="f4bbac642086de4f52a3fdda2de5fa2c", archive=True),
        RemoteFile("val2017.zip", (_COCO + "zips/val2017.zip",), md5="442b8da7639aecaf257c1dceb8ba8c80", archive=True),
        RemoteFile("train2017.zip", (_COCO + "zips/train2017.zip",), md5="cced6f7f71b7629ddf16f17bbcfab6b2",
                   archive=True),
    ),
    notes="About 19 GB. Offline copy: coco-mini (80 train + 79 val images, same layout; see its README).",
))

register(DatasetSpec(
    name="coco-karpathy",
    title="Karpathy and Fei-Fei's train/val/test split of COCO (dataset_coco.json)",
    homepage="https://cs.stanford.edu/people/karpathy/deepimagesent/",
    licence="split file distributed by the authors with the paper's code; captions are COCO's (CC BY 4.0)",
    files=(RemoteFile(
        "caption_datasets.zip", ("https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",),
        md5="4fa8c08369d22fe16e41dc124bd1adc2", archive=True,
    ),),
    notes="Holds dataset_coco.json (and the Flickr8k/30k splits); 113,287 train (with restval) / 5,000 val / 5,000 test.",
))
