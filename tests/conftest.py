"""Fixtures shared by every test module: the OpenBao server, the Key Vault emulator, PostgreSQL, the bundle."""

pytest_plugins = ["tests.openbao", "tests.keyvault_emulator", "tests.postgres", "tests.bundle_image"]
