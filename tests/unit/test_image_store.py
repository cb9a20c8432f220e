"""The image store's bookkeeping without root: names, lookups, users, removal."""

import json
from pathlib import Path

import pytest

from nspod import image, imagerm
from nspod.errors import ImageInUse, NoSuchImage, UsageError

A = "a" * 63 + "1"
B = "b" * 63 + "2"


def _fake(store: image.ImageStore, image_id: str, *names: str) -> None:
    """An image as a pull leaves it: its directory, record and names."""
    store.ensure()
    d = Path(store.image_dir(image_id))
    (d / "rootfs").mkdir(parents=True)
    (d / "image.json").write_text(json.dumps({"id": image_id, "config": {"config": {
        "Cmd": ["sh"]}}}))
    for n in names:
        store.set_name(n, image_id)


@pytest.fixture
def store(tmp_path: Path) -> image.ImageStore:
    return image.ImageStore(str(tmp_path))


def test_lookups(store: image.ImageStore) -> None:
    _fake(store, A, "127.0.0.1:5000/team/app:1", "localhost/app:latest")
    _fake(store, B, "docker.io/library/busybox:latest")
    assert store.lookup("127.0.0.1:5000/team/app:1") == (A, "127.0.0.1:5000/team/app:1")
    assert store.lookup("team/app:1") == (A, "127.0.0.1:5000/team/app:1")  # short name
    assert store.lookup("busybox") == (B, "docker.io/library/busybox:latest")
    assert store.lookup("bbbb") == (B, None)  # an id prefix
    assert store.lookup("sha256:" + A) == (A, None)
    assert store.lookup("nothere") == (None, None)
    assert store.get("localhost/app").config == {"Cmd": ["sh"]}
    with pytest.raises(NoSuchImage):
        store.get("nothere")


def test_a_short_name_two_registries_have_is_ambiguous(store: image.ImageStore) -> None:
    _fake(store, A, "r1.example/app:1")
    _fake(store, B, "r2.example/app:1")
    with pytest.raises(UsageError, match="more than one"):
        store.resolve("app:1")


def test_rm_untags_a_second_name_then_removes(store: image.ImageStore) -> None:
    _fake(store, A, "localhost/one:1", "localhost/two:1")
    assert imagerm.remove(store, "localhost/one:1") == ["untagged localhost/one:1"]
    assert store.ids() == [A]
    assert imagerm.remove(store, "two:1") == ["untagged localhost/two:1", f"deleted {A}"]
    assert store.ids() == [] and store.name_map() == {}
    assert list(Path(store.tmp).iterdir()) == []


def test_rm_refused_while_a_pod_directory_uses_it(store: image.ImageStore,
                                                   tmp_path: Path) -> None:
    _fake(store, A, "localhost/app:1")
    pod = tmp_path / "pods" / "web"
    pod.mkdir(parents=True)
    store.use(A, str(pod))
    with pytest.raises(ImageInUse, match="in use by pod web"):
        imagerm.remove(store, "localhost/app:1")
    assert imagerm.prune(store, every=True) == []
    pod.rmdir()  # the pod is gone: its record of use is stale and forgotten
    assert store.users(A) == []
    assert imagerm.remove(store, "localhost/app:1")[-1] == f"deleted {A}"


def test_prune_takes_nameless_images_and_dead_pulls(store: image.ImageStore) -> None:
    _fake(store, A, "localhost/app:1")
    _fake(store, B)  # its name moved to a newer pull
    Path(store.tmp, "20260101-dead").mkdir()  # what a killed pull left (no lock held)
    assert imagerm.prune(store) == [f"deleted {B}"]
    assert store.ids() == [A] and list(Path(store.tmp).iterdir()) == []
    assert imagerm.prune(store, every=True) == [f"deleted {A}"]


def test_use_of_a_removed_image(store: image.ImageStore, tmp_path: Path) -> None:
    with pytest.raises(NoSuchImage):
        store.use(A, str(tmp_path))
