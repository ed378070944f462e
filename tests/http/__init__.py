"""Tests of transports.http: the transports, the wire, the outbound guard and TLS."""
