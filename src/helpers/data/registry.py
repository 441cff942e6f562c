"""The one registry of downloadable dataset files: name -> official URL(s) and checksum.

Each dataset the book reads is listed once here. ``helpers.data.store`` resolves every
file through this table, so a URL or checksum is never repeated in a chapter.

Beside the official files, ``BOOK_ARCHIVES`` lists the book-sized copy of each offline
dataset (one ``<name>.tar.gz`` on the repository's GitHub release, with its sha256 and
size; ``python -m helpers data pack`` generates ``book_archives.py``). Their base
URL is ``book_data_url()``: ``$BOOK_DATA_URL`` when set, else the release's address.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from helpers.data import book_archives

ENV_DATA_URL = "BOOK_DATA_URL"


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


def release_url() -> str:
    """Where the book-sized archives are on the repository's GitHub release."""
    return f"{book_archives.REPOSITORY}/releases/download/{book_archives.RELEASE}/"


def book_data_url() -> str:
    """Base URL of the archives: ``$BOOK_DATA_URL`` or the release."""
    value = os.environ.get(ENV_DATA_URL) or release_url()
    return value if value.endswith("/") else value + "/"


@dataclass(frozen=True)
class BookArchive:
    """A dataset's book-sized copy: a deterministic .tar.gz of its offline folder."""

    name: str
    filename: str
    sha256: str
    size: int  # bytes of the archive
    files: int  # files in the dataset folder
    unpacked_bytes: int
    top: dict[str, str | None]  # top entries: a file's sha256 prefix; None: a folder

    def holds(self, entry: str, sha256: str | None = None) -> bool:
        """True if the folder has top-level ``entry`` (with ``sha256``: that file)."""
        if entry not in self.top:
            return False
        prefix = self.top[entry]
        return sha256 is None or (prefix is not None and sha256.startswith(prefix))

    @property
    def url(self) -> str:
        """Where the archive is downloaded from now (see ``book_data_url``)."""
        return book_data_url() + self.filename

    def remote(self) -> RemoteFile:
        """The archive as a downloadable, checksummed file."""
        return RemoteFile(self.filename, (self.url,), sha256=self.sha256,
                          size=self.size, archive=True)


BOOK_ARCHIVES: dict[str, BookArchive] = {
    name: BookArchive(name=name, **record)
    for name, record in book_archives.ARCHIVES.items()
}


def book_archive(name: str) -> BookArchive | None:
    """The book-sized archive of dataset ``name``, or None when it has none."""
    return BOOK_ARCHIVES.get(name)


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

register(DatasetSpec(
    name="mvtec",
    title="MVTec Anomaly Detection (MVTec AD), one archive per category (Bergmann et al. 2019)",
    homepage="https://www.mvtec.com/company/research/datasets/mvtec-ad",
    licence="CC BY-NC-SA 4.0 (non-commercial use only; derivatives under the same licence)",
    # The links on MVTec's downloads page (they redirect to these mydrive.ch shares). MVTec publishes no
    # checksums: these sha256 values were recorded by independent public download scripts, and for bottle,
    # grid, metal_nut, screw and zipper two such scripts agree (with the sizes given here).
    # The shares change every few months (anomalib #3121, #3441, #3608); no checksummed
    # mirror is known. Fallback: download <category>.tar.xz from MVTec's downloads page
    # and put it in $BOOK_DATA_DIR/mvtec/ or <cache>/mvtec/; its sha256 must be this.
    files=tuple(
        RemoteFile(f"{category}.tar.xz", (f"https://www.mydrive.ch/shares/{share}/download/{item}/{category}.tar.xz",),
                   sha256=sha, size=size, archive=True)
        for category, share, item, sha, size in (
            ("bottle", "150452/132a93367fb17cdf968dfb5c4013f6e7", "420937370-1629958698",
             "726512129cb3b1f47d4f6cd7c7fc9170db7fc209132249c788fec06029cb5dc3", 155_880_244),
            ("cable", "150453/10f960e07fec2838b2cd512586633a32", "420937413-1629958794",
             "1e3d59b80a6a8da5adf32fb0cf311c7b964cde146d6920aef9ca66380999a9cd", None),
            ("capsule", "150454/e0ce6dd74eb150f46c0d98131b3703f2", "420937454-1629958872",
             "f6a41cb11f1589d552888fe9c43a1adcbcae15b70073e19093322f836d00a2b6", None),
            ("carpet", "150455/eac7fbce84d93a5094e13f391170eca4", "420937484-1629959013",
             "d9dd5064515a20bd75cf24d223c570579141abd72388beef892780b74dbaa85d", None),
            ("grid", "150456/bb0b2e3dc804ccb8b4485e01f8e4493b", "420937487-1629959044",
             "d94a9a651cbfaee22c94d06cf8fa8204a590c872362de0489eb34f1645328de8", 160_763_852),
            ("hazelnut", "150457/51d49f65e84bdc100ff8035d7dd783ea", "420937545-1629959162",
             "a7f4e7d65a60a235def7236a46fcb854d62e6c6917c16b1ec9cb4ff089d3b0da", None),
            ("leather", "150458/923030ce14e10a7d147e95d0f8885f6b", "420937607-1629959262",
             "704ffa48b1dc2fc44824aa50442d9febc399dd92a5d6fd8156f8aa0373d15f24", None),
            ("metal_nut", "150459/c68856a21dca589b0f8ff6d4ee0f18f4", "420937637-1629959294",
             "86e3c8e163ceb19146ad3ddc408e85cc34ae02e0da430e07a73bac6bbb48532a", 165_414_484),
            ("pill", "150460/d4f1c04da67034ccc8d8b5fa3e73f244", "420938129-1629960351",
             "ac6ce9ec4ec2a5d67c906d82147bd7431980cf00b78f25d63201a5f17e3a2038", None),
            ("screw", "150461/242f454cc6385e5693c4fd4b94567d1e", "420938130-1629960389",
             "0a27a365a21e472d19b9fb48cb8e4002b49fabe083bff7f4c16fa57d78154f10", 195_344_332),
            ("tile", "150462/5479f0fdc97bc6fa16eab0cb0cf0109f", "420938133-1629960456",
             "392228153b96d0db9f179d3f7c2d63e131e907154883b57309fcbf798643173c", None),
            ("toothbrush", "150463/895a1a5fb84b958f07417784b060434b", "420938134-1629960477",
             "fe72a34b4b0d074f84e844be7ef8c4f64f7f02f20e25f19c9e3b4a231c8bea77", None),
            ("transistor", "150464/99b8ea0332438d64fcc2475ee73f9c29", "420938166-1629960554",
             "146b2166c35a1d0cf37ded091366ac01a50338b4ac704632f1239890eaca4449", None),
            ("wood", "150465/d5b4115b720cdb54d217e75636e6e374", "420938383-1629960649",
             "3757297ac2a266072eb4f25a97f805f5b37fd583492b20bd709f310736c1ea47", None),
            ("zipper", "150466/bd155b557520edaf692d9bfdb915c24a", "420938385-1629960680",
             "7ab46e0e195da145db30052baea3d3a5d14c5f0e710137c968e0423f02cb942d", 159_484_784),
        )
    ),
    notes="Read one category at a time (helpers.data.mvtec). Offline copy: the screw category at 512 px "
          "(see its README).",
))

register(DatasetSpec(
    name="frames",
    title="Big Buck Bunny (Blender Foundation 2008), a 60 s excerpt: cartoon frames for colorization",
    homepage="https://peach.blender.org/",
    licence="CC BY 3.0, (c) 2008 Blender Foundation | www.bigbuckbunny.org",
    files=(RemoteFile(
        "big_buck_bunny.mp4",
        (
            "https://github.com/parulj/ivideo/raw/53e1756d650fb2a99e50aad73be269681ed56ea4/big_buck_bunny.mp4",
            "https://raw.githubusercontent.com/parulj/ivideo/53e1756d650fb2a99e50aad73be269681ed56ea4/big_buck_bunny.mp4",
        ),
        # The publisher gives no checksum for this excerpt; this sha256 is the one recorded in the offline
        # copy's README (datasets/frames/README.md) when its frames were extracted from this file.
        sha256="fc37c9809ace22480f6c5b94c7a490e1eb1a68912080f004a45defd2b8194f9c",
    ),),
    notes="Offline copy: frames/big_buck_bunny/, 238 frames at 4 fps, 256 px high (see its README). "
          "Without it, helpers.data.frames decodes the video once into the user cache.",
))

register(DatasetSpec(
    name="food",
    title="Food-101: 101 food categories, 1,000 photos each (Bossard, Guillaumin, Van Gool 2014)",
    homepage="https://data.vision.ee.ethz.ch/cvl/datasets_extra/food-101/",
    licence="research use; the photos belong to their Foodspotting owners (see the archive's license_agreement.txt)",
    archive_root="food-101",
    files=(RemoteFile(
        "food-101.tar.gz", ("http://data.vision.ee.ethz.ch/cvl/food-101.tar.gz",),
        md5="85eeb15f3717b99a5da872d97d918f87",  # the publisher gives none; this is torchvision's (datasets.Food101)
        archive=True,
    ),),
    notes="Offline copy food101_10: 10 classes, 120 train + 40 test each, short side 128 px (see its README).",
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
    name="coco-mini",
    title="COCO 2017 captions, book-sized: 80 train + 79 val images, 5 captions each",
    homepage="https://cocodataset.org/#download",
    licence=("annotations CC BY 4.0 (COCO Consortium); images under their Flickr "
             "licences and the COCO terms of use"),
    files=(),  # only the book-sized archive (BOOK_ARCHIVES); the full set is "coco"
    notes=("The official COCO 2017 layout, reduced (see its README); chapter 05 at "
           "the cpu and smoke profiles."),
))

# caption_datasets.zip: Karpathy's own address has answered 404 since 2023
# (ruotianluo/ImageCaptioning.pytorch#184). The second URL is an unverified Hugging Face
# copy named in public code (vl_mamba's COCO loader); the md5 decides if it is the file.
# Fallback: put caption_datasets.zip (md5 4fa8c08369d22fe16e41dc124bd1adc2) at
# <cache>/coco-karpathy/caption_datasets.zip.
register(DatasetSpec(
    name="coco-karpathy",
    title="Karpathy and Fei-Fei's train/val/test split of COCO (dataset_coco.json)",
    homepage="https://cs.stanford.edu/people/karpathy/deepimagesent/",
    licence="split file distributed by the authors with the paper's code; captions are COCO's (CC BY 4.0)",
    files=(RemoteFile(
        "caption_datasets.zip", (
            "https://cs.stanford.edu/people/karpathy/deepimagesent/caption_datasets.zip",
            "https://huggingface.co/datasets/gpantaz/karpathy_split/resolve/main/caption_datasets.zip",
        ),
        md5="4fa8c08369d22fe16e41dc124bd1adc2", archive=True,
    ),),
    notes="Holds dataset_coco.json (and the Flickr8k/30k splits); 113,287 train (with restval) / 5,000 val / 5,000 test.",
))
