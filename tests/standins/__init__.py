"""Loopback stand-ins for services this machine cannot reach (each speaks the real wire format)."""
