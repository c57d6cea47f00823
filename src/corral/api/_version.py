"""The API's version prefix, shared by server and client without importing either."""

API_VERSION = "v1"
