"""The Kodak PhotoCD set (24 images, 768x512 or 512x768): from a local directory, or downloaded.

The checksums are those of the widely mirrored PNG distribution (r0k.us), so a download is
verified file by file; a wrong or partial file is refused, never used.
"""

from __future__ import annotations

import hashlib
import urllib.request
from pathlib import Path

from tqdm.auto import tqdm

from ..errors import SINRInputError

KODAK_URL = "http://r0k.us/graphics/kodak/kodak/{name}"
KODAK_SHA256 = {
    "kodim01.png": "a56e27cbf5f843c048b6af1d6e090760e9c92fadba88b7dee0205918a37523bd",
    "kodim02.png": "133d50ad0f2cda48fef30e251f433fa1a98ee08c0f2d07cdab9462e876ccae5d",
    "kodim03.png": "e25ca1ff2f0c0cb5fdfd5f9b0a0bb21ac4c3de3c84a67f35b09a85d3306249db",
    "kodim04.png": "1e079e4adc03524e53f1394a2a8e1c5995f0f70a5aec125b12fa3fdbe33cba37",
    "kodim05.png": "10349e963c5c813d327852f82c1795fa4148d69fedffc4c589bee458e3ac3d53",
    "kodim06.png": "363510303b715d4cbc384e1ce227e466b613a09e1b71ae985882bf8e7fbd9b18",
    "kodim07.png": "a74d606cef80e70a04fb983364f79fb954ad46665edf2a8b7355ce81adfa7998",
    "kodim08.png": "e3cfc1371a5643c7f8cdf1bd565c172abce6aa26e3f2fdce74cbf7c32364089d",
    "kodim09.png": "a0c72eb70826619305388ed9c0f8aa8f491b234155d62673cda270d7021149a2",
    "kodim10.png": "28fb615837dc8e66fc92c40158cac80b57f07d0ce77d22576aa85ac9e2787336",
    "kodim11.png": "7936814b58b5387fce2e4e2488b4ec830dadd95fa9520f358ddb30990b50f2b6",
    "kodim12.png": "d78c37c2f04f23761ed2367dd77e2db584ddd4c3950833fecf89f199a8126980",
    "kodim13.png": "bc34a3ce58dea09dce1704c997171602de90cb34d0c8503a988b77f473d39b08",
    "kodim14.png": "55a94550ff18f3246c4074fd32b77b0c74447c26b6ad274d564d999c0450ba6e",
    "kodim15.png": "d36d884e29bce92adea11de456be4e9a5815e79c112d47453a34a6f6edc84e63",
    "kodim16.png": "a89c7268ccd4718ba424a99fc4643c572cf692ca6eae887185ceb4e9f11d2e54",
    "kodim17.png": "37afcc89fbdcb76d9518e04b2fc011027e2f4cd14b3b2f83cefd721641a47c5b",
    "kodim18.png": "5deb2d91e347cbdcc0d8a595daa8877de0772c9cdbce4956a2f45a0f97648a47",
    "kodim19.png": "8f12d577f9ca36f384f82dec11ed8a4e12a27bd5a32ef117b9bcaf4fe4d0606f",
    "kodim20.png": "3b46c71e3b92a563820ba32936be8330c586c41f938efd94be938386aae4328a",
    "kodim21.png": "ac958597c82073f6bb65129c68f72b651db5b9efd82e11547d07350214bc268b",
    "kodim22.png": "37782d92a1cfb36ff586047d5c0a2fa75e042fd0b58f90f866b4ab91349c4e03",
    "kodim23.png": "2ed596d7de74cc43d23add4c116763f49d7b5a78b21444fe84caece531ee933b",
    "kodim24.png": "ac96f39dacff2ec303ddb8a7eb72d59f77af2b491144926335938338ee63473d",
}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def kodak_paths(directory: str | Path, verify: bool = False) -> list[Path]:
    """The 24 image paths in ``directory`` (kodim01.png ... kodim24.png), all present."""
    directory = Path(directory)
    if not directory.is_dir():
        raise SINRInputError(f"Kodak directory {directory} does not exist (download_kodak(directory) fetches it)")
    paths = [directory / name for name in KODAK_SHA256]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise SINRInputError(f"Kodak directory {directory} lacks {len(missing)} images: {missing[:5]}")
    if verify:
        bad = [p.name for p in paths if _sha256(p) != KODAK_SHA256[p.name]]
        if bad:
            raise SINRInputError(f"Kodak images with unexpected content in {directory}: {bad}")
    return paths


def download_kodak(directory: str | Path, url: str = KODAK_URL) -> list[Path]:
    """Download the missing images into ``directory``, verifying each checksum."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for name, digest in tqdm(KODAK_SHA256.items(), desc="Kodak", unit="image"):
        target = directory / name
        if target.is_file() and _sha256(target) == digest:
            continue
        tmp = target.with_name(name + ".part")
        with urllib.request.urlopen(url.format(name=name), timeout=60) as response:
            tmp.write_bytes(response.read())
        if _sha256(tmp) != digest:
            tmp.unlink()
            raise SINRInputError(f"downloaded {name} does not match its checksum; nothing was kept")
        tmp.replace(target)
    return kodak_paths(directory)
