"""AzureWebJobsStorage the way the Functions host reads it: connection string locally,
identity-based settings in Azure."""

from __future__ import annotations

import pytest

from shared.adapters.storage import StorageAccount, StorageConfigError


def test_connection_string_wins() -> None:
    account = StorageAccount.from_settings(
        {
            "AzureWebJobsStorage": "UseDevelopmentStorage=true",
            "AzureWebJobsStorage__accountName": "ignored",
        }
    )
    assert account.connection_string == "UseDevelopmentStorage=true"


def test_account_name_gives_the_three_public_endpoints_and_the_client_id() -> None:
    account = StorageAccount.from_settings(
        {"AzureWebJobsStorage__accountName": "pkstore", "AzureWebJobsStorage__clientId": "1234"}
    )
    assert account.connection_string is None
    assert dict(account.endpoints) == {
        "queue": "https://pkstore.queue.core.windows.net",
        "table": "https://pkstore.table.core.windows.net",
        "blob": "https://pkstore.blob.core.windows.net",
    }
    assert account.client_id == "1234"


def test_service_uris_override_the_account_name_per_service() -> None:
    account = StorageAccount.from_settings(
        {
            "AzureWebJobsStorage__accountName": "pkstore",
            "AzureWebJobsStorage__queueServiceUri": "https://q.example.net",
        }
    )
    assert account.endpoints["queue"] == "https://q.example.net"
    assert account.endpoints["blob"] == "https://pkstore.blob.core.windows.net"


def test_service_uris_without_an_account_name_need_all_three() -> None:
    with pytest.raises(StorageConfigError, match="AzureWebJobsStorage__tableServiceUri"):
        StorageAccount.from_settings(
            {
                "AzureWebJobsStorage__queueServiceUri": "https://q.example.net",
                "AzureWebJobsStorage__blobServiceUri": "https://b.example.net",
            }
        )


def test_nothing_set_names_both_ways_to_configure_storage() -> None:
    with pytest.raises(StorageConfigError) as raised:
        StorageAccount.from_settings({})
    assert "AzureWebJobsStorage" in str(raised.value)
    assert "AzureWebJobsStorage__accountName" in str(raised.value)


def test_identity_clients_use_the_managed_identity_with_its_client_id() -> None:
    account = StorageAccount.from_settings(
        {"AzureWebJobsStorage__accountName": "pkstore", "AzureWebJobsStorage__clientId": "1234"}
    )
    client = account.queue_service()
    assert client.url.startswith("https://pkstore.queue.core.windows.net")
    assert type(client.credential).__name__ == "ManagedIdentityCredential"
