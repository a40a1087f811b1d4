// Crashes the fuzzers found in code this branch leaves to its owners (the qcow2 metadata core, being rewritten).
// A target recognises each by its trigger and reports it as an open finding instead of a crash, so the smoke runs
// keep failing on anything new. Each has a reproducer, FuzzRegressions/<target>/<id>.open.bin, and a test fails as
// soon as it stops reproducing: then rename it to <id>.<outcome>.bin and delete its entry and check here.
namespace VDisk.Fuzz;

/// <summary>The ids of known, reported, not yet fixed crashes.</summary>
public static class OpenFindings
{
    /// <summary>
    /// qcow2: Qcow2SnapshotTable.Read accepts a snapshot whose l1_table_offset has bit 63 set (it only checks cluster
    /// alignment), and opening that snapshot reads its L1 table at a negative offset: an ArgumentOutOfRangeException or
    /// ArgumentException from the storage instead of a Corrupt error (through ImageChain.Open with a snapshot,
    /// Convert-VDisk -Snapshot). The reproducer is qemu-img's two-snapshot seed with the first entry's offset set to
    /// 0xffffffffffff0000 (the afl-found inputs had empty L1 tables, which main's new core no longer reads).
    /// </summary>
    public const string Qcow2SnapshotL1OffsetNegative = "qcow2-snapshot-l1-offset-negative";
}
