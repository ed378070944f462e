"""Tests of the webhooks-delivery packages, laid out like them."""
