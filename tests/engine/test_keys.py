"""engine.exchange.keys against real backends: gnome-keyring's Secret Service on a private
D-Bus session bus (tests/secret_service.py), and the encrypted file in a temporary home.
Nothing of keyring is mocked."""

from __future__ import annotations

import configparser
import os
import re
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pydantic import SecretStr
from secret_service import secret_service, session_env

from engine.config import Settings
from engine.exchange.keys import (
    ApiKeys,
    KeysError,
    backend_name,
    backend_note,
    choose_backend,
    delete_keys,
    has_keys,
    keyring_file,
    load_keys,
    require_keys,
    secret_strings,
    store_keys,
    stored_exchanges,
    unlock,
)

KEY = "kEy-7f3a9c1e5b2d4068"
SECRET = "sEcret/+=9d8c7b6a5f4e3d2c1b0a"
PASS = "correct horse battery staple"
KEYS = ApiKeys(SecretStr(KEY), SecretStr(SECRET))


@pytest.fixture(scope="module")
def bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A running, unlocked gnome-keyring for the module; its bus address."""
    with secret_service(tmp_path_factory.mktemp("gnome")) as address:
        yield address


@pytest.fixture(scope="module")
def locked_bus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """gnome-keyring started on a login collection made before and left locked."""
    home = tmp_path_factory.mktemp("gnome-locked")
    with secret_service(home):
        pass  # makes the login collection, then stops
    with secret_service(home, unlock=False) as address:
        yield address


def file_env(home: Path, **more: str) -> dict[str, str]:
    return {**session_env(home), "CMA_KEYRING_PASSPHRASE": PASS, **more}


# --- choosing ---------------------------------------------------------------------------


def test_an_unlocked_secret_service_is_chosen_and_keys_round_trip(bus: str, tmp_path: Path) -> None:
    backend = choose_backend({**session_env(tmp_path), "DBUS_SESSION_BUS_ADDRESS": bus})
    assert backend_name(backend) == "Secret Service (gnome-keyring)"
    assert backend_note(backend) == ""
    store_keys("kraken", ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASS)), backend)
    try:
        loaded = load_keys("kraken", backend)
        assert loaded is not None
        assert loaded.api_key.get_secret_value() == KEY
        assert loaded.api_secret.get_secret_value() == SECRET
        assert loaded.password is not None and loaded.password.get_secret_value() == PASS
        assert has_keys("kraken", backend) and not has_keys("okx", backend)
        assert "kraken" in (stored_exchanges(backend) or [])
    finally:
        assert delete_keys("kraken", backend)
    assert load_keys("kraken", backend) is None
    assert not delete_keys("kraken", backend)
    assert not (tmp_path / "data" / "cma" / "keyring.cfg").exists()


def test_without_a_session_bus_the_encrypted_file_is_chosen(tmp_path: Path) -> None:
    backend = choose_backend(file_env(tmp_path))
    assert backend_name(backend) == "encrypted file ~/data/cma/keyring.cfg"
    assert "DBUS_SESSION_BUS_ADDRESS is not set" in backend_note(backend)


def test_a_locked_collection_is_not_used_it_would_prompt(locked_bus: str, tmp_path: Path) -> None:
    env = file_env(tmp_path, DBUS_SESSION_BUS_ADDRESS=locked_bus)
    backend = choose_backend(env)
    assert backend_name(backend).startswith("encrypted file")
    assert "locked" in backend_note(backend)
    with pytest.raises(KeysError, match=r"CMA_KEYRING=secretservice, but .* is locked"):
        choose_backend({**env, "CMA_KEYRING": "secretservice"})


def test_a_bus_without_a_secret_service_falls_back_to_the_file(tmp_path: Path) -> None:
    env = file_env(tmp_path, DBUS_SESSION_BUS_ADDRESS=f"unix:path={tmp_path}/no-bus")
    backend = choose_backend(env)
    assert backend_name(backend).startswith("encrypted file")
    assert "cannot be reached" in backend_note(backend)


def test_cma_keyring_file_forces_the_file_even_beside_a_secret_service(
    bus: str, tmp_path: Path
) -> None:
    env = file_env(tmp_path, DBUS_SESSION_BUS_ADDRESS=bus, CMA_KEYRING="file")
    assert backend_name(choose_backend(env)).startswith("encrypted file")
    env["CMA_KEYRING"] = "SecretService"
    assert backend_name(choose_backend(env)) == "Secret Service (gnome-keyring)"


@pytest.mark.parametrize("value", ["plaintext", "keyrings.alt.file.PlaintextKeyring", "none"])
def test_cma_keyring_must_name_a_backend(tmp_path: Path, value: str) -> None:
    with pytest.raises(
        KeysError, match=f"CMA_KEYRING must be secretservice or file, got '{value}'"
    ):
        choose_backend(file_env(tmp_path, CMA_KEYRING=value))


UNSAFE = [
    "keyrings.alt.file.PlaintextKeyring",
    "keyrings.cryptfile.file.PlaintextKeyring",
    "keyring.backends.fail.Keyring",
    "keyring.backends.null.Keyring",
    "keyring.backends.chainer.ChainerBackend",
]


@pytest.mark.parametrize("named", UNSAFE)
@pytest.mark.parametrize("with_bus", [False, True])
def test_python_keyring_backend_naming_an_unsafe_backend_is_never_used(
    named: str, with_bus: bool, bus: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import keyring.core

    # In the environment given and in the process's own, where keyring itself reads it:
    # keyring's own choice would be the unsafe backend, cma's is not.
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", named)
    assert type(keyring.core.load_env()).__name__ in {
        "PlaintextKeyring",
        "Keyring",
        "ChainerBackend",
    }
    env = file_env(tmp_path, PYTHON_KEYRING_BACKEND=named)
    if with_bus:
        env["DBUS_SESSION_BUS_ADDRESS"] = bus
    backend = choose_backend(env)
    expected = "Secret Service (gnome-keyring)" if with_bus else "encrypted file"
    assert backend_name(backend).startswith(expected)
    module = type(backend).__mro__[1].__module__
    assert module in {"keyring.backends.SecretService", "keyrings.cryptfile.cryptfile"}


def test_a_plaintext_backend_in_the_environment_stores_nothing_in_clear(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    env = file_env(tmp_path, PYTHON_KEYRING_BACKEND="keyrings.alt.file.PlaintextKeyring")
    store_keys("binance", KEYS, choose_backend(env))
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert files == [keyring_file(env)]
    raw = files[0].read_bytes()
    assert KEY.encode() not in raw and SECRET.encode() not in raw


# --- the encrypted file ---------------------------------------------------------------------


def test_the_file_is_0600_in_a_0700_folder_and_holds_no_key_in_clear(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    folder = tmp_path / "data" / "cma"
    folder.mkdir(parents=True, mode=0o755)
    folder.chmod(0o755)
    backend = choose_backend(env)
    store_keys("binance", KEYS, backend)
    path = keyring_file(env)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    raw = path.read_bytes()
    for secret in (KEY, SECRET, PASS, KEY[:8], SECRET[:8]):
        assert secret.encode() not in raw
    assert list(folder.iterdir()) == [path]  # no temporary file left beside it
    loaded = load_keys("binance", choose_backend(env))
    assert loaded == KEYS


def test_a_wrong_passphrase_reads_nothing_and_deletes_nothing(tmp_path: Path) -> None:
    store_keys("binance", KEYS, choose_backend(file_env(tmp_path)))
    wrong = choose_backend(file_env(tmp_path, CMA_KEYRING_PASSPHRASE="not it"))
    with pytest.raises(KeysError, match=r"wrong passphrase for the keyring .*keyring.cfg"):
        load_keys("binance", wrong)
    wrong = choose_backend(file_env(tmp_path, CMA_KEYRING_PASSPHRASE="not it"))
    with pytest.raises(KeysError, match="wrong passphrase"):
        delete_keys("binance", wrong)
    assert load_keys("binance", choose_backend(file_env(tmp_path))) == KEYS


def test_no_passphrase_and_no_terminal_says_how_to_give_one(tmp_path: Path) -> None:
    backend = choose_backend(session_env(tmp_path), prompt=False)
    assert not has_keys("binance", backend)  # the names are readable without it
    with pytest.raises(KeysError, match="needs its passphrase: set CMA_KEYRING_PASSPHRASE"):
        unlock(backend)
    with pytest.raises(KeysError, match="CMA_KEYRING_PASSPHRASE is empty"):
        unlock(choose_backend(file_env(tmp_path, CMA_KEYRING_PASSPHRASE="")))


@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o622])
def test_a_file_others_can_read_or_write_is_refused(tmp_path: Path, mode: int) -> None:
    env = file_env(tmp_path)
    path = keyring_file(env)
    path.parent.mkdir(parents=True)
    path.write_text("")  # the modes are checked before the file is read
    path.chmod(mode)
    with pytest.raises(KeysError, match=f"open to other users \\(mode {mode:04o}\\).*chmod 600"):
        choose_backend(env)


def test_a_symlink_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    target = tmp_path / "elsewhere.cfg"
    target.write_text("")
    path = keyring_file(env)
    path.parent.mkdir(parents=True)
    path.symlink_to(target)
    with pytest.raises(KeysError, match="is not a regular file"):
        choose_backend(env)


def test_a_changed_entry_fails_its_authentication(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    store_keys("binance", KEYS, choose_backend(env))
    path = keyring_file(env)
    config = configparser.RawConfigParser()
    config.read(path)
    # Swap the key's and the secret's ciphertexts: each is bound to its own name.
    a, b = config.get("cma", "binance_3aapi_5fkey"), config.get("cma", "binance_3aapi_5fsecret")
    config.set("cma", "binance_3aapi_5fkey", b)
    config.set("cma", "binance_3aapi_5fsecret", a)
    with path.open("w") as out:
        config.write(out)
    with pytest.raises(KeysError, match=r"the keyring \(encrypted file .*\) failed"):
        load_keys("binance", choose_backend(env))


def test_a_file_made_with_other_kdf_costs_is_refused_clearly(tmp_path: Path) -> None:
    from keyrings.cryptfile.cryptfile import CryptFileKeyring

    env = file_env(tmp_path)
    path = keyring_file(env)
    path.parent.mkdir(parents=True, mode=0o700)
    stock = CryptFileKeyring()
    stock.file_path = str(path)
    stock.time_cost = 1  # quick; the point is that the costs differ from cma's
    stock.keyring_key = PASS
    with pytest.raises(KeysError, match=r"was not written by cma .*argon2id t=3"):
        load_keys("binance", choose_backend(env))


# --- the keys -----------------------------------------------------------------------------


def test_a_password_is_stored_and_removed_when_set_again_without_one(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    backend = choose_backend(env)
    store_keys("okx", ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASS)), backend)
    loaded = load_keys("okx", backend)
    assert loaded is not None and loaded.password == SecretStr(PASS)
    store_keys("okx", KEYS, backend)
    assert load_keys("okx", backend) == KEYS
    assert stored_exchanges(backend) == ["okx"]


def test_half_of_the_keys_is_an_error_that_says_what_to_run(tmp_path: Path) -> None:
    env = file_env(tmp_path)
    backend = choose_backend(env)
    store_keys("binance", KEYS, backend)
    backend.delete_password("cma", "binance:api_secret")
    with pytest.raises(
        KeysError, match=r"API secret for binance is missing .*cma keys set binance"
    ):
        load_keys("binance", backend)


@pytest.mark.parametrize("field", ["api_key", "api_secret"])
def test_an_empty_key_is_refused(tmp_path: Path, field: str) -> None:
    values = {"api_key": SecretStr(KEY), "api_secret": SecretStr(SECRET), field: SecretStr(" ")}
    with pytest.raises(KeysError, match=f"the {field.replace('_', ' ')} must not be empty"):
        store_keys("binance", ApiKeys(**values), choose_backend(file_env(tmp_path)))


@pytest.mark.parametrize("bad", ["Binance", "bin:ance", "", "1inch", "a b"])
def test_an_exchange_id_must_look_like_a_ccxt_id(tmp_path: Path, bad: str) -> None:
    with pytest.raises(KeysError, match="exchange id must be a ccxt id"):
        store_keys(bad, KEYS, choose_backend(file_env(tmp_path)))


def test_the_repr_of_keys_shows_no_secret() -> None:
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASS))
    for text in (repr(keys), str(keys)):
        assert KEY not in text and SECRET not in text and PASS not in text


def test_secret_strings_holds_each_secret_and_its_url_encoded_form() -> None:
    keys = ApiKeys(SecretStr(KEY), SecretStr(SECRET), SecretStr(PASS))
    assert secret_strings(keys) == [
        KEY,
        SECRET,
        "sEcret%2F%2B%3D9d8c7b6a5f4e3d2c1b0a",
        PASS,
        "correct%20horse%20battery%20staple",
    ]
    assert secret_strings(KEYS) == [KEY, SECRET, "sEcret%2F%2B%3D9d8c7b6a5f4e3d2c1b0a"]


def test_require_keys_names_the_backend_and_the_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = file_env(tmp_path)
    with pytest.raises(
        KeysError,
        match=re.escape(
            "no API keys for binance in encrypted file ~/data/cma/keyring.cfg; "
            "run: cma keys set binance"
        ),
    ):
        require_keys("binance", env)
    store_keys("bybit", KEYS, choose_backend(env))
    settings = Settings.model_validate({"exchange": {"id": "bybit"}})
    assert require_keys(settings, env) == KEYS


def test_importing_keys_loads_neither_keyring_nor_ccxt() -> None:
    code = (
        "import sys, engine.exchange.keys; "
        "print(sorted(m for m in ('keyring', 'keyrings', 'ccxt', 'secretstorage', 'textual') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )  # fmt: skip
    assert done.stdout.strip() == "[]"
