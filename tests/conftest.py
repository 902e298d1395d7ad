"""Fixtures shared by every test module: the OpenBao server, the Key Vault and Secret Manager emulators, PostgreSQL,
the bundle."""

pytest_plugins = ["tests.openbao", "tests.keyvault_emulator", "tests.gcp_emulator", "tests.postgres", "tests.bundle_image"]
