// Crashes the fuzzers found in code this branch leaves to its owners (the qcow2 metadata core, being rewritten).
// A target recognises each by its trigger and reports it as an open finding instead of a crash, so the smoke runs
// keep failing on anything new. Each has a reproducer, FuzzRegressions/<target>/<id>.open.bin, and a test fails as
// soon as it stops reproducing: then rename it to <id>.<outcome>.bin and delete its entry and check here.
namespace VDisk.Fuzz;

/// <summary>The ids of known, reported, not yet fixed crashes.</summary>
public static class OpenFindings
{
    // None open. (Fixed: qcow2-snapshot-l1-offset-negative, a snapshot whose l1_table_offset had bit 63 set, now a
    // Corrupt error from the snapshot table; its reproducer stays as FuzzRegressions/qcow2/*.corrupt.bin.)
}
