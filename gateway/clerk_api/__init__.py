"""I/O to Clerk: the Backend API client and the JWKS cache (real Clerk or the local emulator)."""
