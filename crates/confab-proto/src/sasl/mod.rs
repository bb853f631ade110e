// placeholder until the SASL module lands
