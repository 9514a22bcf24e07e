"""Every configured way in reaches the fake org through simple-salesforce; secrets stay out of errors."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from connectors.salesforce import SalesforceConnector
from tests.connectors.salesforce.conftest import CLIENT_ID
from tests.fakes.salesforce import FakeSalesforce


def _owners(connector: SalesforceConnector) -> set[str]:
    return {record.external_id for page in connector.pull(cursor=None) for record in page.records
            if record.kind == "owner"}


def test_password_and_security_token_log_in_through_soap(fake_sf: FakeSalesforce, sf_users, make_connector) -> None:
    fake_sf.org.users_by_login["int@acme.example"] = ("pa55word", "TOKEN123")
    connector = make_connector(auth="password", username="int@acme.example", password="pa55word",
                               security_token="TOKEN123")
    assert _owners(connector) == {user["Id"] for user in sf_users}
    wrong = make_connector(auth="password", username="int@acme.example", password="nope", security_token="TOKEN123")
    problems = wrong.check()
    assert problems == ["salesforce login failed (INVALID_LOGIN)"] and "nope" not in problems[0]


def test_jwt_bearer_signs_an_assertion_the_org_verifies(fake_sf: FakeSalesforce, sf_users, make_connector) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    fake_sf.org.jwt_keys[CLIENT_ID] = public
    fake_sf.org.users_by_login["int@acme.example"] = ("", "")
    connector = make_connector(auth="jwt", username="int@acme.example", private_key=private)
    assert _owners(connector) == {user["Id"] for user in sf_users}
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()).decode()
    assert make_connector(auth="jwt", username="int@acme.example", private_key=other).check() == [
        "salesforce login failed (invalid_grant)"]


def test_an_access_token_with_its_instance_url_needs_no_login(fake_sf: FakeSalesforce, sf_users,
                                                              make_connector) -> None:
    connector = make_connector(auth="access_token", access_token=fake_sf.access_token(), instance_url=fake_sf.url)
    assert _owners(connector) == {user["Id"] for user in sf_users}


@pytest.mark.parametrize(("overrides", "field"), [
    ({"auth": "password", "username": "u"}, "password"),
    ({"auth": "access_token"}, "access_token"),
    ({"api_version": "v59.0"}, "api_version"),
    ({"task_external_id_field": "Handoff_Key"}, "task_external_id_field"),
    ({"fields": {"opportunity": {"x": "y"}}}, "fields"),
])
def test_configuration_errors_name_the_field(fake_sf: FakeSalesforce, overrides, field) -> None:
    from marshmallow import ValidationError

    from tests.connectors.salesforce.conftest import base_config
    with pytest.raises(ValidationError) as caught:
        SalesforceConnector.config_schema().load(base_config(fake_sf, **overrides))
    assert field in caught.value.messages


def test_secrets_never_show_in_the_connector_repr(fake_sf: FakeSalesforce, make_connector) -> None:
    connector = make_connector()
    assert connector.config["refresh_token"] not in repr(connector)
    assert connector.config["client_secret"] not in repr(connector)
