"""Integration settings: off or loopback by default; nothing unconfigured is contacted."""

from __future__ import annotations

import json

import pytest

from medlens.config import Settings, load_settings
from medlens.errors import ConfigError
from medlens.integrations.errors import NotConfigured
from medlens.integrations.settings import dicom_node, dicomweb_url, http_session, node_for_ae


def test_defaults_are_off_or_loopback(tmp_path):
    s = Settings(data_dir=tmp_path)
    assert s.dicom_nodes == [] and s.dicomweb_url is None and s.fhir_url is None
    assert s.dicom_listen_host == "127.0.0.1" and s.dicom_listen_port == 11112
    assert s.local_ae_title == "MEDLENS" and s.result_delivery == "none"
    assert s.auto_interpret.enabled is False
    assert s.auto_interpret.modalities == ["CR", "DX"]
    assert s.auto_interpret.body_parts == ["CHEST"]
    assert s.sr_kind == "basic"


def test_unconfigured_destinations_are_clear_errors_not_contacts(tmp_path):
    s = Settings(data_dir=tmp_path)
    with pytest.raises(NotConfigured, match="MEDLENS_DICOM_NODES"):
        dicom_node(s)
    with pytest.raises(NotConfigured, match="MEDLENS_DICOMWEB_URL"):
        dicomweb_url(s)


def test_nodes_and_rules_from_the_environment(tmp_path, monkeypatch):
    nodes = [{"name": "pacs", "ae_title": "ORTHANC", "host": "127.0.0.1", "port": 4242},
             {"name": "router", "ae_title": "ROUTER", "port": 104}]  # fmt: skip
    monkeypatch.setenv("MEDLENS_DICOM_NODES", json.dumps(nodes))
    monkeypatch.setenv("MEDLENS_AUTO_INTERPRET", '{"enabled": true, "quiet_seconds": 2}')
    monkeypatch.setenv("MEDLENS_DICOMWEB_URL", "http://127.0.0.1:8042/dicom-web/")
    s = load_settings(data_dir=tmp_path)
    assert dicom_node(s).name == "pacs" and dicom_node(s, "router").port == 104
    assert dicom_node(s, "ROUTER").name == "router"  # by AE title too
    assert node_for_ae(s, "ORTHANC ").name == "pacs" and node_for_ae(s, "X") is None
    with pytest.raises(NotConfigured, match="known: pacs, router"):
        dicom_node(s, "elsewhere")
    assert s.auto_interpret.enabled and s.auto_interpret.quiet_seconds == 2
    assert dicomweb_url(s) == "http://127.0.0.1:8042/dicom-web"


def test_bad_values_are_one_line_config_errors_without_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("MEDLENS_DICOM_NODES", '[{"name": "x", "ae_title": "A_TITLE_FAR_TOO_LONG"}]')
    with pytest.raises(ConfigError, match="dicom_nodes"):
        load_settings(data_dir=tmp_path)
    monkeypatch.delenv("MEDLENS_DICOM_NODES")
    monkeypatch.setenv("MEDLENS_RESULT_DELIVERY", "email")
    with pytest.raises(ConfigError, match="result_delivery"):
        load_settings(data_dir=tmp_path)


def test_auth_is_bearer_else_basic_and_never_shown(tmp_path):
    bearer = Settings(data_dir=tmp_path, dicomweb_token="tok-123")
    assert http_session(bearer).headers["Authorization"] == "Bearer tok-123"
    assert "tok-123" not in repr(bearer)
    basic = Settings(data_dir=tmp_path, dicomweb_user="u", dicomweb_password="p")
    assert http_session(basic).auth == ("u", "p") and "'p'" not in repr(basic)
    fhir = Settings(data_dir=tmp_path, fhir_token="f-tok")
    assert http_session(fhir, token_field="fhir").headers["Authorization"] == "Bearer f-tok"
