"""Deep Compression (Han et al. 2016): magnitude pruning, k-means weight sharing, Huffman coding."""
