"""Gymnasium environments of ddso (the simulated customer journey, ``ddso/CustomerJourney-v0``)."""
