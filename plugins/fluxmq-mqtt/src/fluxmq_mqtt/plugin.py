"""Hookimpls of the MQTT plugin (filled in by the MQTT issue)."""
