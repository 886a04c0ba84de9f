# Three Gaussian blobs in 4 features on very different scales (so standardisation matters).
function rnd() { seed = (seed * 1103515245 + 12345) % 2147483648; return seed / 2147483648 }
function gauss(   u, v) { u = rnd(); if (u < 1e-12) u = 1e-12; v = rnd(); return sqrt(-2 * log(u)) * cos(6.283185307179586 * v) }
BEGIN {
  print "f0,f1,f2,f3,cls"
  split("0 1.5 -1.5", c0, " "); split("0 1.2 1.2", c1, " "); split("1 -1 0.5", c2, " ")
  for (i = 0; i < n; i++) {
    k = i % 3
    printf "%.6f,%.4f,%.7f,%.5f,c%d\n", c0[k+1] + gauss(), 1000 * (c1[k+1] + gauss()), 0.001 * (c2[k+1] + gauss()), 5 + gauss(), k
  }
}
