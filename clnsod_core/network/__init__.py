"""The CLN-SOD network: configuration, backbones, the model, its losses and input preprocessing."""
