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

# The means of a[1..n] by set of processes (window r in set set[r]) into
# v[1..ns]; returns ns.  Each window counts in its own set, even when
# another window of that set was left out.
function set_means(a, n, set, v,    r, j, ns, sm, sc) {
        delete v
        for (r = 1; r <= n; r++) { sm[set[r]] += a[r]; sc[set[r]]++ }
        ns = 0
        for (j in sc) v[++ns] = sm[j] / sc[j]
        return ns
}

# mean_ci over the set means of a[1..n], said as the table says it; the
# number of sets is left in ci_n.
function ci_text(a, n, set,    v) {
        ci_n = set_means(a, n, set, v)
        mean_ci(v, ci_n)
        return (ci_h < 0) ? sprintf("mean %+.2f%% (one set)", ci_m) : sprintf("mean over %d sets %+.2f%% ± %.2f (95%% CI)", ci_n, ci_m, ci_h)
}

# The verdict on "under target (%)" for the set means of a[1..n]: the whole
# 95% confidence interval of the mean must lie on one side of it.
function ci_verdict(a, n, set, target,    v) {
        mean_ci(v, set_means(a, n, set, v))
        if (ci_h < 0)
                return "inconclusive (one set of processes)"
        if (ci_m + ci_h < target)
                return "yes"
        if (ci_m - ci_h >= target)
                return "**NO**"
        return sprintf("inconclusive (the 95%% CI, %+.2f–%+.2f, straddles %g%%)", ci_m - ci_h, ci_m + ci_h, target)
}
