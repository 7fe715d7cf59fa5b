import pytest

from koala_lib import profiles


@pytest.fixture
def clean_env(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("KOALA_PROFILE", raising=False)
    monkeypatch.setattr(profiles, "visible_gpus", lambda: 0)
    return monkeypatch


def test_explicit_profile_wins(clean_env):
    clean_env.setenv("CI", "true")
    clean_env.setenv("KOALA_PROFILE", "gpu")
    assert profiles.resolve_profile("cpu") == "cpu"
    assert profiles.resolve_profile(" CI ") == "ci"


def test_auto_reads_koala_profile_then_ci_then_gpus(clean_env):
    assert profiles.resolve_profile("auto") == "cpu"
    clean_env.setattr(profiles, "visible_gpus", lambda: 1)
    assert profiles.resolve_profile("auto") == "gpu"
    clean_env.setenv("CI", "true")
    assert profiles.resolve_profile("auto") == "ci"
    clean_env.setenv("KOALA_PROFILE", "cpu")
    assert profiles.resolve_profile("auto") == "cpu"


@pytest.mark.parametrize("value", ["", "0", "false", "False"])
def test_ci_false_values_do_not_mean_ci(clean_env, value):
    clean_env.setenv("CI", value)
    assert profiles.resolve_profile() == "cpu"


def test_unknown_profiles_are_refused(clean_env):
    with pytest.raises(ValueError, match="unknown profile 'fast'"):
        profiles.resolve_profile("fast")
    clean_env.setenv("KOALA_PROFILE", "huge")
    with pytest.raises(ValueError, match="KOALA_PROFILE='huge'"):
        profiles.resolve_profile()


def test_check_environment_reports_keras_3_and_warns_without_gpu(clean_env, capsys):
    with pytest.warns(UserWarning, match="No GPU visible"):
        info = profiles.check_environment()
    assert int(info["keras"].split(".")[0]) == 3
    assert info["gpus"] == "0"
    assert "keras 3." in capsys.readouterr().out


def test_check_environment_refuses_keras_2(clean_env):
    clean_env.setattr(profiles, "package_versions", lambda names=(): {"keras": "2.15.0"})
    with pytest.raises(RuntimeError, match="needs Keras 3"):
        profiles.check_environment(gpu_needed=False)


def test_check_environment_without_gpu_need_does_not_warn(clean_env, recwarn):
    info = profiles.check_environment(gpu_needed=False)
    assert info["gpus"] == "not needed here"
    assert not [w for w in recwarn if "GPU" in str(w.message)]
