"""Techniques the studies apply that are neither codecs nor networks: image alignment and masks,
Lab colour, k-means cleaning, caption text and BLEU, image metrics, and the training loops
(``train`` for classifiers, ``gan`` for StarGAN)."""
