// Repair of a qcow2 image's refcounts and COPIED flags (qemu-img check -r leaks / -r all; qcow2.rst "Host cluster
// management", and the COPIED flag of "Cluster mapping"; QEMU's compare_refcounts and check_oflag_copied). A repair
// only ever changes counts, COPIED flags and the dirty and corrupt bits, never a reference, and only on an image whose
// references a check found sound (Qcow2Check decides; anything else is refused before a byte is written).
// Order, through the core's write order, so a power cut leaves an image no worse than before that a second repair finishes:
//   - counts are set to the references found: raising a count never hurts, and a leaked count that drops has nothing
//     pointing at it;
//   - COPIED flags follow the new counts, and a flag that says "refcount 1" is written only after that count is durable;
//   - the dirty and corrupt bits are cleared last, after everything else is durable, and only when nothing is left to fix.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>What a repair fixed.</summary>
/// <param name="LeaksFixed">Clusters whose refcount was lowered to their references.</param>
/// <param name="CorruptionsFixed">Refcounts raised to their references, and COPIED flags corrected.</param>
internal readonly record struct Qcow2RepairCounts(long LeaksFixed, long CorruptionsFixed);

internal sealed partial class Qcow2Image
{
    /// <summary>
    /// Checks the image in <paramref name="storage"/> and, unless <paramref name="repair"/> is false or the check finds
    /// nothing to fix or damage a repair cannot fix safely, repairs it (<paramref name="all"/>: also counts lower than
    /// their references). Closes <paramref name="storage"/>. Returns the check made before, and what was fixed (null
    /// when nothing was written). <paramref name="cancel"/> stops the check; a repair, once begun, runs to its end.
    /// </summary>
    public static (Qcow2CheckAnalysis Before, Qcow2RepairCounts? Fixed) CheckAndRepair(IStorage storage, bool repair, bool all,
        CancellationToken cancel = default)
    {
        Qcow2CheckAnalysis analysis;
        try
        {
            analysis = Qcow2Check.Analyze(storage, cancel, h => Qcow2Driver.CheckFeatures(h, storage.Name, writable: false));
        }
        catch
        {
            storage.Dispose();
            throw;
        }
        var r = analysis.Report;
        if (!repair || r.Unrepairable.Count > 0 || (r.IsClean && !r.Dirty && !r.MarkedCorrupt))
        {
            storage.Dispose();
            return (analysis, null);
        }
        using var image = Open(storage, writable: true, Qcow2CacheBudget.Default);
        return (analysis, image.Repair(analysis, all));
    }

    /// <summary>
    /// Repairs what <paramref name="analysis"/> (a check of this image, made before it was opened) found: leaks always,
    /// and with <paramref name="all"/> refcounts lower than their references too. COPIED flags are corrected once no
    /// count is left wrong (as qemu-img does), and the dirty and corrupt bits cleared when nothing is left to fix.
    /// </summary>
    public Qcow2RepairCounts Repair(Qcow2CheckAnalysis analysis, bool all)
    {
        lock (_lock)
        {
            CheckWritable();
            if (analysis.Report.Unrepairable.Count > 0)
                throw VDiskException.Corrupt(Storage.Name, $"{Storage.Name} cannot be repaired: {string.Join("; ", analysis.Report.Unrepairable)}.");
            long leaksFixed = 0, countsFixed = 0, countsLeft = 0;
            foreach (var (cluster, stored) in analysis.Mismatched)
            {
                long references = analysis.Referenced[cluster];
                if (stored < references && !all)
                {
                    countsLeft++;
                    continue;
                }
                Refcounts.Repair(new ClusterIndex(cluster), references);
                if (stored > references) leaksFixed++;
                else countsFixed++;
            }
            long flagsFixed = countsLeft == 0 ? FixCopiedFlags() : 0;
            WriteBackAll();
            if (countsLeft == 0 && (Header.IsDirty || Header.IsCorrupt))
            {
                _header.Update(h => h.IncompatibleFeatures &= ~(Qcow2Features.Dirty | Qcow2Features.Corrupt)); // barriers before and after
                _setDirtyBit = false;
            }
            return new Qcow2RepairCounts(leaksFixed, countsFixed + flagsFixed);
        }
    }

    // Sets COPIED on every active L1 and L2 entry whose cluster now has refcount 1 and clears it elsewhere, in place (a
    // shared L2 table too, as QEMU does: snapshots ignore the flag). Returns the number of entries changed.
    private long FixCopiedFlags()
    {
        long changed = 0;
        var l1 = Active.L1;
        void BeforeTheFirstChange() // a flag saying "refcount 1" only after that count is on disk (no barrier when none changes)
        {
            if (changed > 0) return;
            Refcounts.MustPrecede(_l2);
            Refcounts.MustPrecede(l1);
        }
        foreach (var (index, l2) in l1.Targets(Geometry, Storage.Name))
        {
            bool tableCopied = Refcounts.Get(Geometry.ClusterOf(l2)) == 1;
            ulong l1Entry = tableCopied ? l1[index] | Qcow2Entries.Copied : l1[index] & ~Qcow2Entries.Copied;
            if (l1Entry != l1[index])
            {
                BeforeTheFirstChange();
                l1.Set(index, l1Entry);
                changed++;
            }
            var table = _l2.Get(l2);
            for (int i = 0; i < Geometry.L2Entries; i++)
            {
                ulong entry = Qcow2ClusterMap.Read(table, i);
                if (Qcow2Entries.Classify(entry, 3) is not (L2EntryKind.Normal or L2EntryKind.ZeroAllocated)) continue;
                bool one = Refcounts.Get(Geometry.ClusterOf(new HostOffset((long)(entry & Qcow2Entries.OffsetMask)))) == 1;
                ulong updated = one ? entry | Qcow2Entries.Copied : entry & ~Qcow2Entries.Copied;
                if (updated == entry) continue;
                BeforeTheFirstChange();
                Qcow2ClusterMap.Write(table, i, updated);
                _l2.MarkDirty(l2);
                changed++;
            }
        }
        return changed;
    }
}
