"""Extractors, the offline ImageNet MobileNetV2 and the embedding cache (TensorFlow and JAX)."""

import keras
import numpy as np
import pytest
from skimage import data as skdata
from skimage.transform import resize

from koala_lib import color, features

CAT_CLASSES = {"tabby", "tiger cat", "Persian cat", "Siamese cat", "Egyptian cat", "lynx"}


def test_class_names_are_imagenet_in_keras_order():
    names = features.imagenet_class_names()
    assert len(names) == 1000
    assert (names[0], names[281], names[504], names[967]) == (
        "tench", "tabby", "coffee mug", "espresso")


def test_offline_weights_are_torchvisions_file():
    path = features.offline_mobilenet_v2_file()
    assert path.name == "mobilenet_v2-b0353104.pth"
    assert features.file_sha256(path) == features.OFFLINE_SHA256
    assert features.OFFLINE_SHA256.startswith("b0353104")  # torchvision names files by it


def test_a_wrong_weights_file_is_refused(tmp_path):
    impostor = tmp_path / "mobilenet_v2-b0353104.pth"
    impostor.write_bytes(b"not the weights")
    with pytest.raises(ValueError, match="refusing weights"):
        features.torchvision_mobilenet_v2(impostor)


def test_a_weights_file_matching_only_the_first_hash_digits_is_refused(tmp_path, monkeypatch):
    impostor = tmp_path / "mobilenet_v2-b0353104.pth"
    impostor.write_bytes(b"not the weights")
    found = features.file_sha256(impostor)
    # The first 8 hex digits (all that the file name promises) agree; a later one differs.
    expected = found[:8] + ("0" if found[8] != "0" else "1") + found[9:]
    monkeypatch.setattr(features, "OFFLINE_SHA256", expected)
    with pytest.raises(ValueError, match="refusing weights") as refused:
        features._check_offline_file(impostor)
    message = str(refused.value)
    assert str(impostor) in message and expected in message and found in message
    assert "delete it" in message.lower()


def test_converted_mobilenet_classifies_real_photos(mobilenet):
    top = mobilenet.top_classes(np.stack([
        color.to_uint8(resize(image, (224, 224), anti_aliasing=True))
        for image in (skdata.chelsea(), skdata.coffee())
    ]), k=3)
    cat, coffee = top
    assert cat[0][0] in CAT_CLASSES, cat
    assert coffee[0][0] == "espresso" and coffee[0][1] > 0.5, coffee


def test_embeddings_are_logits_from_lightness_only(mobilenet):
    rgb = skdata.astronaut()[::2, ::2]
    lightness = color.rgb_to_lab(rgb)[..., :1][None]
    embedding = mobilenet.embed(lightness)
    assert embedding.shape == (1, 1000) and embedding.dtype == np.float32
    # Logits, not probabilities: outside [0, 1] on both sides.
    assert embedding.min() < 0 and embedding.max() > 1
    # The colour of the photo cannot leak: the gray photo gives the same embedding.
    gray_lightness = color.rgb_to_lab(color.rgb_to_gray(rgb))[..., :1][None]
    np.testing.assert_allclose(mobilenet.embed(gray_lightness), embedding, atol=1e-2)


@pytest.mark.parametrize("size", [120, 320])  # enlarged to 224, and made smaller
def test_the_embedder_graph_gives_the_scikit_image_embeddings_of_real_portraits(
        mobilenet, portrait_folder, size):
    from koala_lib import data
    from koala_lib.data import prepare

    paths = data.list_images(portrait_folder, colour_only=True)[::300][:6]
    prepared = prepare.prepare(paths, size, workers=1, progress=False)
    lightness = prepared.lightness(np.arange(len(paths)))
    expected = features.scikit_image_embeddings(mobilenet, lightness)
    found = mobilenet.embed(lightness, chunk=4)  # two chunks
    # Float32 rounding apart (a few 1e-5 of logits that reach about 15), the same numbers.
    np.testing.assert_allclose(found, expected, atol=1e-3 * np.abs(expected).max())
    gray = mobilenet.top_classes(color.lab_to_rgb(color.merge_lab(
        lightness[..., 0], np.zeros((*lightness.shape[:3], 2)))), k=1)
    assert [row[0][0] for row in gray] == [
        features.imagenet_class_names()[i] for i in expected.argmax(axis=1)]


def test_inception_resnet_v2_is_registered_with_its_input_size():
    keras.utils.set_random_seed(0)
    extractor = features.FeatureExtractor("inception_resnet_v2", None)
    assert extractor.input_size == 299 and extractor.embedding_dim == 1000
    out = extractor.embed(np.full((1, 64, 48), 50.0, np.float32))
    assert out.shape == (1, 1000)


def test_unknown_extractor_and_weights_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown extractor 'vgg'"):
        features.FeatureExtractor("vgg")
    with pytest.raises(ValueError, match="only provided for mobilenet_v2"):
        features.FeatureExtractor("inception_resnet_v2", "torchvision")
    with pytest.raises(FileNotFoundError, match="neither"):
        features.FeatureExtractor("mobilenet_v2", str(tmp_path / "nope.h5"))


def test_default_weights_are_the_offline_ones_for_mobilenet(capsys):
    extractor = features.load_extractor("mobilenet_v2")
    assert extractor.name == "mobilenet_v2" and extractor.weights_name == "torchvision"
    assert "Feature extractor: mobilenet_v2 (torchvision weights)" in capsys.readouterr().out


def test_an_offline_imagenet_download_names_the_offline_extractor(monkeypatch):
    def offline(name, weights):
        raise Exception("URL fetch failure on https://storage.googleapis.com/...: None -- "
                        "[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(features, "FeatureExtractor", offline)
    with pytest.raises(ConnectionError, match='EXTRACTOR = "mobilenet_v2"'):
        features.load_extractor("inception_resnet_v2")


def test_local_weights_file_loads_the_same_network(tmp_path, random_mobilenet):
    path = tmp_path / "mobilenet_v2_random.weights.h5"
    random_mobilenet.model.save_weights(path)
    from_file = features.FeatureExtractor("mobilenet_v2", str(path))
    lightness = np.random.default_rng(1).uniform(0, 100, (2, 40, 40)).astype(np.float32)
    reference = random_mobilenet.embed(lightness)
    # Two networks, the same weights: equal up to rounding, logits near 0 included.
    np.testing.assert_allclose(from_file.embed(lightness), reference, rtol=1e-5,
                               atol=1e-5 * np.abs(reference).max())
    assert from_file.fingerprint == random_mobilenet.fingerprint


@pytest.mark.parametrize("verbose", [0, 1])
def test_embedding_a_set_of_one_chunk_prints_no_keras_progress_bar(random_mobilenet, capsys,
                                                                    verbose):
    lightness = np.full((2, 32, 32), 50.0, np.float32)  # well under one chunk
    random_mobilenet.embed(lightness, verbose=verbose)
    out, err = capsys.readouterr()
    assert out == ""  # Keras' bar ("1/1 ━━━━ 0s 40ms/step") would be here
    # The progress asked for is tqdm's (on stderr), and only when asked for.
    assert ("embedding (mobilenet_v2)" in err) == bool(verbose)


def test_converted_weights_cut_short_are_converted_again(tmp_path, monkeypatch, mobilenet):
    import os

    original = features.offline_mobilenet_v2_file()
    monkeypatch.setenv("KOALA_CACHE_DIR", str(tmp_path))
    (tmp_path / "weights").mkdir()
    os.link(original, tmp_path / "weights" / features.OFFLINE_FILE)
    converted = tmp_path / "weights" / features.CONVERTED_FILE
    converted.write_bytes(b"\x89HDF\r\n\x1a\n" + bytes(100))  # an h5 header, then nothing
    with pytest.warns(UserWarning, match="cannot be loaded.*converting them again"):
        model = features.torchvision_mobilenet_v2()
    for mine, reference in zip(model.get_weights(), mobilenet.model.get_weights(), strict=True):
        np.testing.assert_array_equal(mine, reference)
    again = features.torchvision_mobilenet_v2()  # the rewritten file loads
    np.testing.assert_array_equal(again.get_weights()[0], model.get_weights()[0])
    assert not list(converted.parent.glob("*.part.*"))
