"""The committed SDL file matches the schema the code builds."""

from __future__ import annotations

from pathlib import Path

from strawberry.types.base import StrawberryObjectDefinition

from schema import schema

SDL_FILE = Path(__file__).resolve().parent.parent / "schema.graphql"


def test_committed_sdl_matches_schema() -> None:
    committed = SDL_FILE.read_text()
    printed = str(schema) + "\n"
    assert committed == printed, (
        "schema.graphql differs from the schema in code; regenerate it with "
        "`python -m schema > schema.graphql` and review the difference"
    )


def test_schema_names_match_contract() -> None:
    printed = schema.as_str()
    for line in [
        "taskHistory(first: Int = 20, after: String = null, status: [ScanStatus!] = null, "
        "accountId: ID = null): ScanTaskConnection!",
        "task(id: ID!): ScanTask",
        "accounts: [EmailAccount!]!",
        "scanFindings(taskId: ID!, first: Int = 50, after: String = null, kind: FindingKind = "
        "null): FindingConnection!",
        "connectImapAccount(input: ImapAccountInput!): ConnectAccountResult!",
        "removeAccount(id: ID!): RemoveAccountResult!",
        "startScan(accountId: ID!, months: Int! = 1): StartScanResult!",
        "cancelScan(taskId: ID!): CancelScanResult!",
        "retryScan(taskId: ID!): StartScanResult!",
        "scanProgress(taskId: ID!): ScanProgress!",
        "myScans: ScanProgress!",
    ]:
        assert line in printed, line


def test_email_account_hides_password() -> None:
    account = schema.get_type_by_name("EmailAccount")
    assert isinstance(account, StrawberryObjectDefinition)
    names = [field.python_name for field in account.fields]
    assert "host" in names
    assert [name for name in names if "password" in name] == []
