"""The colorizer: shapes, parameter counts, fusion, saving. Runs under TensorFlow and JAX."""

import keras
import numpy as np
import pytest

from koala_lib import model


def _inputs(batch, height, width, dim=1000, seed=0):
    rng = np.random.default_rng(seed)
    lightness = rng.uniform(-1, 1, (batch, height, width, 1)).astype("float32")
    embedding = rng.normal(0, 3, (batch, dim)).astype("float32")
    return lightness, embedding


@pytest.mark.parametrize("size", [224, (64, 96), (32, 32), (8, 16)])
def test_output_shape_and_range_at_several_sizes(size):
    colorizer = model.build_colorizer(size)
    height, width = (size, size) if isinstance(size, int) else size
    ab = keras.ops.convert_to_numpy(colorizer(_inputs(2, height, width)))
    assert ab.shape == (2, height, width, 2)
    assert ab.dtype == np.float32
    assert np.abs(ab).max() < 1.0  # tanh


def test_any_size_model_accepts_multiples_of_8():
    colorizer = model.build_colorizer(None)
    for height, width in [(40, 56), (16, 8)]:
        ab = colorizer.predict(_inputs(1, height, width), verbose=0)
        assert ab.shape == (1, height, width, 2)


@pytest.mark.parametrize("size", [225, (64, 60), 0, (4, 8)])
def test_sizes_not_divisible_by_8_are_refused_clearly(size):
    with pytest.raises(ValueError, match="multiple of 8"):
        model.build_colorizer(size)


def test_parameter_counts_match_the_report_table():
    colorizer = model.build_colorizer(224, embedding_dim=1000)
    assert colorizer.count_params() == 6_573_794
    assert sum(int(np.prod(w.shape)) for w in colorizer.trainable_weights) == 6_573_794
    assert model.build_colorizer(224, embedding_dim=1001).count_params() == 6_574_050
    parts = {layer.name: layer.count_params() for layer in colorizer.layers}
    assert parts["encoder"] == 5_827_200
    assert parts["fusion"] == (256 + 1000) * 256 + 256
    assert parts["decoder"] == 424_802
    # The count does not depend on the image size: the network is fully convolutional.
    assert model.build_colorizer((64, 96)).count_params() == 6_573_794


def test_encoder_and_decoder_shapes_follow_the_table():
    encoder = model.build_encoder(224)
    convs = [layer for layer in encoder.layers if "conv" in layer.name]
    assert [(c.filters, c.strides[0]) for c in convs] == list(model.ENCODER_SPEC)
    assert all(c.kernel_size == (3, 3) for c in convs)
    assert tuple(encoder.output.shape) == (None, 28, 28, 256)
    decoder = model.build_decoder(224)
    assert tuple(decoder.input.shape) == (None, 28, 28, 256)
    assert tuple(decoder.output.shape) == (None, 224, 224, 2)
    assert decoder.get_layer("decoder_ab").activation.__name__ == "tanh"


def test_fusion_equals_convolution_plus_broadcast_dense():
    fusion = model.FusionLayer(256)
    rng = np.random.default_rng(1)
    features = rng.normal(size=(3, 5, 7, 256)).astype("float32")
    embedding = rng.normal(size=(3, 1000)).astype("float32")
    tiled = keras.ops.convert_to_numpy(fusion.tile(features, embedding))
    assert tiled.shape == (3, 5, 7, 1256)
    standardized = (embedding - embedding.mean(-1, keepdims=True)) / embedding.std(
        -1, keepdims=True)
    # Every cell holds the same (standardised) embedding.
    np.testing.assert_allclose(tiled[:, 4, 6, 256:], standardized, atol=1e-5)
    np.testing.assert_allclose(tiled[:, 0, 0, 256:], standardized, atol=1e-5)
    fused = keras.ops.convert_to_numpy(fusion([features, embedding]))
    broadcast = keras.ops.convert_to_numpy(model.fusion_by_broadcast(fusion, features, embedding))
    assert fused.shape == (3, 5, 7, 256)
    np.testing.assert_allclose(fused, broadcast, rtol=1e-4, atol=1e-4)
    assert (fused > 0).mean() > 0.2  # not a trivially all-zero ReLU output


def test_keras_file_round_trip_in_safe_mode(tmp_path):
    colorizer = model.build_colorizer((32, 48))
    inputs = _inputs(2, 32, 48, seed=3)
    before = colorizer.predict(inputs, verbose=0)
    path = tmp_path / "colorizer.keras"
    colorizer.save(path)
    loaded = model.load_colorizer(path)
    np.testing.assert_allclose(loaded.predict(inputs, verbose=0), before, atol=1e-6)
    assert loaded.count_params() == colorizer.count_params()
    assert isinstance(loaded.get_layer("fusion"), model.FusionLayer)


def test_a_few_adam_steps_fit_one_image():
    keras.utils.set_random_seed(0)
    colorizer = model.build_colorizer((32, 32))
    colorizer.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse")
    lightness, embedding = _inputs(1, 32, 32, seed=4)
    target = np.tanh(np.random.default_rng(5).normal(0, 0.3, (1, 32, 32, 2))).astype("float32")
    history = colorizer.fit([lightness, embedding], target, epochs=30, verbose=0)
    losses = history.history["loss"]
    assert losses[-1] < 0.7 * losses[0]


def test_embedding_standardisation_is_parameter_free_and_can_be_turned_off():
    plain = model.build_colorizer((32, 32), standardize_embedding=False)
    assert plain.count_params() == model.build_colorizer((32, 32)).count_params()
    fusion = model.FusionLayer(8, standardize_embedding=False)
    embedding = np.arange(6, dtype="float32").reshape(1, 6)
    tiled = keras.ops.convert_to_numpy(fusion.tile(np.zeros((1, 2, 2, 3), "float32"), embedding))
    np.testing.assert_array_equal(tiled[0, 1, 1, 3:], embedding[0])
    # Scaling the logits of an image does not change what the standardising fusion sees.
    standard = model.FusionLayer(8)
    a = keras.ops.convert_to_numpy(standard.prepare_embedding(embedding))
    b = keras.ops.convert_to_numpy(standard.prepare_embedding(embedding * 7 + 3))
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_saved_model_keeps_the_fusion_setting(tmp_path):
    plain = model.build_colorizer((16, 16), standardize_embedding=False)
    plain.save(tmp_path / "plain.keras")
    loaded = model.load_colorizer(tmp_path / "plain.keras")
    assert loaded.get_layer("fusion").standardize_embedding is False


def test_classification_head_gives_logits_over_the_bins_at_a_quarter_size():
    from koala_lib.quantize import in_gamut_bins

    colorizer = model.build_colorizer((32, 48), head="classification")
    logits = keras.ops.convert_to_numpy(colorizer(_inputs(2, 32, 48)))
    assert logits.shape == (2, 8, 12, len(in_gamut_bins()))
    assert model.colorizer_head(colorizer) == "classification"
    assert model.colorizer_head(model.build_colorizer(32)) == "regression"
    # The same encoder and fusion; the decoder keeps its first three convolutions.
    regression = model.build_colorizer(224)
    classification = model.build_colorizer(224, head="classification")
    for part in ("encoder", "fusion"):
        assert (classification.get_layer(part).count_params()
                == regression.get_layer(part).count_params())
    decoder = classification.get_layer("decoder")
    assert [layer.name for layer in decoder.layers if "conv" in layer.name] == [
        "decoder_conv1", "decoder_conv2", "decoder_conv3"]
    assert decoder.get_layer("decoder_logits").count_params() == 64 * 261 + 261
    with pytest.raises(ValueError, match="unknown head"):
        model.build_colorizer(32, head="ordinal")


def test_predict_scaled_ab_reads_either_head_at_full_size():
    lightness, embedding = _inputs(2, 32, 32)
    for head in model.HEADS:
        ab = model.predict_scaled_ab(model.build_colorizer(32, head=head), lightness, embedding)
        assert ab.shape == (2, 32, 32, 2) and ab.dtype == np.float32
        assert np.abs(ab).max() < 1.0
    # Logits that all point at one bin give that bin's colour everywhere.
    colorizer = model.build_colorizer(32, head="classification")
    from koala_lib.quantize import in_gamut_bins, nearest_bin

    target = nearest_bin(np.array([40.0, 30.0]))
    decoder = colorizer.get_layer("decoder").get_layer("decoder_logits")
    kernel, bias = decoder.get_weights()
    bias = np.full_like(bias, -50.0)
    bias[target] = 50.0
    decoder.set_weights([np.zeros_like(kernel), bias])
    ab = model.predict_scaled_ab(colorizer, lightness, embedding) * 128
    np.testing.assert_allclose(ab, np.broadcast_to(in_gamut_bins()[target], ab.shape),
                               atol=1e-3)
