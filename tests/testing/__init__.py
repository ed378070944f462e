"""Tests of transports.testing: the test kit the package ships."""
