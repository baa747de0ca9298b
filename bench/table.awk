#!/usr/bin/awk -f
# bench/table.awk: medians over rounds -> one markdown table for one scenario.
#   awk -f table.awk -v scen=a -v order="csock uv_echo ev_echo epoll_echo" results.tsv
# Input: run.sh's TSV (round scenario server msgs_s p50_us p99_us cpu_us_msg
# srv_cpu_pct srv_runq_pct lg_cpu_pct status); "NA" cells (failed runs) are left out.
# Plain POSIX awk (Debian's default is mawk: no asort), hence the hand sort.

function median(list,    a, n, i, j, t) {
    n = split(list, a, " ")
    if (n == 0) return ""
    for (i = 2; i <= n; i++) {          # insertion sort: n is the round count
        t = a[i] + 0
        for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j + 1] = a[j]
        a[j + 1] = t
    }
    return n % 2 ? a[(n + 1) / 2] + 0 : (a[n / 2] + a[n / 2 + 1]) / 2
}
function spread(list, med,    a, n, i, lo, hi) {
    n = split(list, a, " ")
    if (n < 2 || med <= 0) return "-"
    lo = hi = a[1] + 0
    for (i = 2; i <= n; i++) { if (a[i] + 0 < lo) lo = a[i] + 0; if (a[i] + 0 > hi) hi = a[i] + 0 }
    return sprintf("%.0f%%", 100 * (hi - lo) / med)
}
function add(key, v) { if (v != "NA" && v != "") col[key] = col[key] " " v }
function fmt_rate(v) { return v == "" ? "-" : v >= 1e6 ? sprintf("%.2fM", v / 1e6) : sprintf("%.1fk", v / 1e3) }
function fmt(v, f) { return v == "" ? "-" : sprintf(f, v) }
function short(s) { sub(/_echo$/, "", s); return s }
function is_floor(s) { return s == "epoll_echo" || s == "uring_echo" }

NR > 1 && $2 == scen {
    s = $3
    add(s SUBSEP "rate", $4); add(s SUBSEP "p50", $5); add(s SUBSEP "p99", $6)
    add(s SUBSEP "cpu", $7); add(s SUBSEP "spct", $8); add(s SUBSEP "wait", $9)
    add(s SUBSEP "lpct", $10)
    if ($4 != "NA") runs[s]++
}
END {
    n = split(order, names, " ")
    # Ratio columns: the floors (epoll_echo, uring_echo) first, then the
    # others in order.
    m = 0
    for (i = 1; i <= n; i++) if (is_floor(names[i])) cols[++m] = names[i]
    for (i = 1; i <= n; i++) if (!is_floor(names[i])) cols[++m] = names[i]
    for (i = 1; i <= n; i++) {
        s = names[i]
        rate[s] = median(col[s SUBSEP "rate"]); cpu[s] = median(col[s SUBSEP "cpu"])
    }
    printf "| server | runs | msgs/s | spread | p50 us | p99 us | CPU us/msg | spread | srv CPU %% | srv wait %% | lg CPU %% |"
    for (j = 1; j <= m; j++) printf " vs %s |", short(cols[j])
    printf "\n|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|"
    for (j = 1; j <= m; j++) printf "--:|"
    printf "\n"
    for (i = 1; i <= n; i++) {
        s = names[i]
        # A server below 90 % CPU was not what limited throughput (loadgen or a
        # neighbour on the shared machine was): flag the number, trust CPU us/msg.
        spct = median(col[s SUBSEP "spct"])
        flag = (spct != "" && spct < 90) ? " *" : ""
        if (flag != "") flagged = 1
        printf "| %s | %d | %s%s | %s | %s | %s | %s | %s | %s | %s | %s |", s, runs[s], fmt_rate(rate[s]), flag,
            spread(col[s SUBSEP "rate"], rate[s]),
            fmt(median(col[s SUBSEP "p50"]), "%.0f"), fmt(median(col[s SUBSEP "p99"]), "%.0f"),
            fmt(cpu[s], "%.2f"), spread(col[s SUBSEP "cpu"], cpu[s]), fmt(spct, "%.0f"), fmt(median(col[s SUBSEP "wait"]), "%.0f"),
            fmt(median(col[s SUBSEP "lpct"]), "%.0f")
        for (j = 1; j <= m; j++) {
            o = cols[j]
            if (o == s) { printf " - |"; continue }
            r = (rate[s] != "" && rate[o] > 0) ? sprintf("%.2f", rate[s] / rate[o]) : "-"
            c = (cpu[s] != "" && cpu[o] > 0) ? sprintf("%.2f", cpu[s] / cpu[o]) : "-"
            printf " %s / %s |", r, c
        }
        printf "\n"
    }
    printf "\nRatio cells: msgs/s ratio / CPU-per-msg ratio of this row's server against the column's.\n"
    if (flagged)
        printf "\\* server below 90 %% CPU: its msgs/s was limited by loadgen or by other load on the machine; compare CPU us/msg.\n"
}
