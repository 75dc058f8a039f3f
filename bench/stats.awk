# SPDX-License-Identifier: MIT
#
# bench/stats.awk: the statistics bench/run and bench/http-ab share.  Not a
# program: its text goes in front of theirs (awk "$(cat stats.awk)$prog").

# Sorts a[1..n] in place (insertion sort: tens of values).
function sort(a, n,    i, j, t) {
        for (i = 2; i <= n; i++) { t = a[i]; for (j = i - 1; j >= 1 && a[j] > t; j--) a[j + 1] = a[j]; a[j + 1] = t }
}

# The f-quantile of a[1..n] (linear between the order statistics); a is
# left as it was.
function q(a, n, f,    b, i, p) {
        for (i = 1; i <= n; i++) b[i] = a[i]
        sort(b, n)
        p = f * (n - 1) + 1; i = int(p)
        return (i >= n) ? b[n] : b[i] + (p - i) * (b[i + 1] - b[i])
}

# The 0.975 quantile of Student's t with df degrees of freedom.
function tq(df,    t) {
        split("12.706 4.303 3.182 2.776 2.571 2.447 2.365 2.306 2.262 2.228 2.201 2.179 2.160 2.145 2.131 2.120 2.110 2.101 2.093 2.086 2.080 2.074 2.069 2.064 2.060 2.056 2.052 2.048 2.045 2.042", t, " ")
        return (df <= 30) ? t[df] : (df <= 60) ? 2.000 : 1.980
}

# The mean of v[1..n] into ci_m, and the half-width of its 95% confidence
# interval into ci_h (-1 when n < 2): for the means of independent sets of
# processes, whose spread is the measurement's error.
function mean_ci(v, n,    i, ss) {
        ci_m = 0
        for (i = 1; i <= n; i++) ci_m += v[i]
        ci_m /= n
        ci_h = -1
        if (n < 2)
                return
        for (i = 1; i <= n; i++) ss += (v[i] - ci_m) ^ 2
        ci_h = tq(n - 1) * sqrt(ss / (n - 1) / n)
}
