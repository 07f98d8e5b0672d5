"""Settings: environment variables, URL rules, validation at construction, the no-key no-op."""

from __future__ import annotations

import logging

import pytest

import gf_integrations as gf
from gf_integrations import ConfigurationError
from gf_integrations.core.context import Conv
from gf_integrations.core.events import UserInput
from gf_integrations.core.masking import redact_pii
from gf_integrations.core.settings import DEFAULT_BASE_URL, build_settings

ENV = (
    "GREENFLASH_API_KEY",
    "GREENFLASH_BASE_URL",
    "GREENFLASH_PRODUCT_ID",
    "GREENFLASH_SAMPLE_RATE",
    "GREENFLASH_ENABLED",
    "GREENFLASH_SPOOL_DIR",
    "GREENFLASH_EXTERNAL_USER_ID",
    "GREENFLASH_SERVERLESS",
    # what tells a serverless platform (core/platform.py)
    "AWS_LAMBDA_RUNTIME_API",
    "AWS_LAMBDA_FUNCTION_NAME",
    "K_SERVICE",
    "FUNCTION_TARGET",
    "VERCEL",
)


@pytest.fixture(autouse=True)
def clean_env(monkeypatch):
    for name in ENV:
        monkeypatch.delenv(name, raising=False)


def test_defaults():
    s = build_settings()
    assert s.base_url == DEFAULT_BASE_URL
    assert s.api_key is None
    assert s.enabled
    assert s.sample_rate == 1.0
    assert not s.can_send  # no key, not local


def test_every_documented_env_var_is_read(monkeypatch, tmp_path):
    monkeypatch.setenv("GREENFLASH_API_KEY", "gf-key")
    monkeypatch.setenv("GREENFLASH_BASE_URL", "https://example.test/api/v1/")
    monkeypatch.setenv("GREENFLASH_PRODUCT_ID", "prod-1")
    monkeypatch.setenv("GREENFLASH_SAMPLE_RATE", "0.25")
    monkeypatch.setenv("GREENFLASH_ENABLED", "off")
    monkeypatch.setenv("GREENFLASH_SPOOL_DIR", str(tmp_path))
    monkeypatch.setenv("GREENFLASH_EXTERNAL_USER_ID", "user-9")
    s = build_settings()
    assert s.api_key == "gf-key"
    assert s.base_url == "https://example.test/api/v1"  # trailing slash trimmed
    assert s.product_id == "prod-1"
    assert s.sample_rate == 0.25
    assert s.enabled is False
    assert s.spool_dir == str(tmp_path)
    assert s.external_user_id == "user-9"


def test_explicit_arguments_win_over_env(monkeypatch):
    monkeypatch.setenv("GREENFLASH_PRODUCT_ID", "from-env")
    monkeypatch.setenv("GREENFLASH_SAMPLE_RATE", "0.1")
    s = build_settings(product_id="explicit", sample_rate=1.0)
    assert s.product_id == "explicit"
    assert s.sample_rate == 1.0


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("GREENFLASH_SAMPLE_RATE", "lots", "GREENFLASH_SAMPLE_RATE must be a number"),
        ("GREENFLASH_SAMPLE_RATE", "1.5", "sample_rate must be within 0..1"),
        ("GREENFLASH_ENABLED", "maybe", "GREENFLASH_ENABLED must be true/false"),
        ("GREENFLASH_BASE_URL", "http://example.com/api", "use https"),
    ],
)
def test_bad_env_values_raise_a_clear_error(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigurationError, match=message):
        gf.GreenflashClient()


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8787/api/v1",
        "http://localhost:8787/api/v1",
        "http://[::1]:8787/api/v1",
        "http://127.0.0.2/api/v1",
        "http://app.localhost/api/v1",
        "https://www.greenflash.ai/api/v1",
        "https://example.com",
    ],
)
def test_accepted_base_urls(url):
    assert build_settings(base_url=url).base_url == url


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://example.com/api/v1", "plain http is only allowed for loopback"),
        ("http://10.0.0.5:8787", "plain http is only allowed for loopback"),
        ("http://localhost.evil.com", "plain http is only allowed for loopback"),
        ("ftp://127.0.0.1/x", "must be an http"),
        ("www.greenflash.ai/api", "must be an http"),
    ],
)
def test_rejected_base_urls(url, message):
    with pytest.raises(ConfigurationError, match=message):
        gf.GreenflashClient(base_url=url)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"max_batch_messages": 500, "max_queue_size": 100}, "must not exceed max_queue_size"),
        ({"flush_interval": 0}, "flush_interval must be > 0"),
        ({"flush_interval": -1}, "flush_interval must be > 0"),
        ({"max_queue_size": 0}, "max_queue_size must be > 0"),
        ({"request_timeout": 0}, "request_timeout must be > 0"),
        ({"retry_budget": -1}, "retry_budget must be >= 0"),
        ({"sample_rate": 2}, "sample_rate must be within 0..1"),
        ({"max_message_bytes": 10, "max_batch_bytes": 5}, "must not exceed max_batch_bytes"),
        ({"mask": "everything"}, "mask must be a callable"),
        ({"no_such_option": 1}, "unknown setting"),
        ({"limits": {"max_string": 1}}, "max_string"),
    ],
)
def test_invalid_configuration_raises_at_construction(kwargs, message):
    with pytest.raises(ConfigurationError, match=message):
        gf.GreenflashClient(base_url="http://127.0.0.1:9", **kwargs)
    assert issubclass(ConfigurationError, ValueError)


def test_mask_pii_shortcut_and_limits_dict():
    s = build_settings(mask="pii", limits={"max_string": 100})
    assert s.mask is redact_pii
    assert s.limits.max_string == 100


def test_repr_never_shows_the_key():
    client = gf.GreenflashClient(api_key="sk-very-secret-123", base_url="http://127.0.0.1:9")
    assert "sk-very-secret-123" not in repr(client)
    assert "sk-very-secret-123" not in repr(client.settings)
    client.shutdown(0.1)


def test_no_key_and_remote_url_warns_once_and_is_a_silent_noop(caplog):
    caplog.set_level(logging.DEBUG, logger="gf_integrations")
    client = gf.GreenflashClient()  # default base URL, no key
    conv = Conv("c", "u")
    for i in range(5):
        assert client.record(UserInput(conv, f"k{i}", "hello")) is False
    assert client.flush(0.1) is True
    client.shutdown(0.1)
    client.shutdown(0.1)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "GREENFLASH_API_KEY" in warnings[0].getMessage()
    assert client.uploader.worker.thread is None  # nothing started, nothing sent
    assert client.stats()["queued"] == 0


def test_disabled_is_silent(caplog):
    caplog.set_level(logging.DEBUG, logger="gf_integrations")
    client = gf.GreenflashClient(enabled=False)
    assert client.record(UserInput(Conv("c", "u"), "k", "x")) is False
    assert client.flush(0.1)
    client.shutdown(0.1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


def test_local_collector_needs_no_key(capture_server):
    client = gf.GreenflashClient(base_url=capture_server.base_url, flush_interval=0.05)
    assert client.active
    client.record(UserInput(Conv("c", "u"), "k", "hello"))
    assert client.flush(5)
    assert "authorization" not in {k.lower() for k in capture_server.headers[0]}
    client.shutdown(1)


def test_api_key_is_sent_as_bearer(capture_server):
    client = gf.GreenflashClient(
        api_key="gf-123", base_url=capture_server.base_url, flush_interval=0.05
    )
    client.record(UserInput(Conv("c", "u"), "k", "hello"))
    assert client.flush(5)
    headers = {k.lower(): v for k, v in capture_server.headers[0].items()}
    assert headers["authorization"] == "Bearer gf-123"
    client.shutdown(1)


def test_a_client_that_cannot_send_leaves_the_spool_alone(tmp_path):
    spooled = tmp_path / "1-abc.json"
    spooled.write_bytes(b'{"externalUserId":"u","externalConversationId":"c","messages":[]}')
    client = gf.GreenflashClient(spool_dir=str(tmp_path))  # no key, remote URL
    assert client.uploader.worker.thread is None
    client.shutdown(0.1)
    assert spooled.exists()


# -- serverless platforms (docs/DESIGN.md section 6b) -------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "my-function"),
        ("K_SERVICE", "my-service"),
        ("FUNCTION_TARGET", "handle"),
        ("VERCEL", "1"),
    ],
)
def test_a_detected_platform_sends_in_process_and_spools_under_tmp(
    monkeypatch, tmp_path, variable, value
):
    monkeypatch.setenv(variable, value)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    s = build_settings()
    assert s.serverless is True
    assert s.sender == "thread"
    assert s.spool_dir == str(tmp_path / "greenflash-spool")
    assert s.estimate_cost is False  # the price table's import would slow every cold start


def test_on_lambda_the_spool_defaults_to_slash_tmp(monkeypatch):
    monkeypatch.setenv("AWS_LAMBDA_FUNCTION_NAME", "my-function")
    monkeypatch.delenv("TMPDIR", raising=False)  # Lambda sets none
    assert build_settings().spool_dir == "/tmp/greenflash-spool"


def test_explicit_settings_win_over_the_serverless_defaults(monkeypatch, tmp_path):
    monkeypatch.setenv("VERCEL", "1")
    s = build_settings(sender="process", spool_dir=str(tmp_path), estimate_cost=True)
    assert (s.serverless, s.sender, s.spool_dir) == (True, "process", str(tmp_path))
    assert s.estimate_cost is True
    monkeypatch.setenv("GREENFLASH_SERVERLESS", "false")
    s = build_settings()
    assert (s.serverless, s.sender, s.spool_dir, s.estimate_cost) == (False, "process", None, True)


def test_serverless_forced_off_a_platform_keeps_the_spool_unset(monkeypatch):
    # an undetected host's /tmp may be shared with other users: no spool by default
    s = build_settings(serverless=True)
    assert (s.serverless, s.sender, s.spool_dir) == (True, "thread", None)
    assert build_settings().serverless is False
    with pytest.raises(ConfigurationError, match="serverless"):
        build_settings(serverless="yes")
