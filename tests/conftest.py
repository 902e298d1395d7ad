"""Fixtures shared by every test module: the OpenBao server, the Key Vault emulator, PostgreSQL."""

pytest_plugins = ["tests.openbao", "tests.keyvault_emulator", "tests.postgres"]
