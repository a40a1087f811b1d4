// Read-only check of a VMDK's sparse extents (VMware "Virtual Disk Format 1.1", "Grain Directories and Grain Tables";
// what qemu-img check does for vmdk, and more): every grain table lies in its file, every grain a table points at starts
// inside the file (qemu's vmdk_co_check), and the redundant grain directory, when there is one, names tables with the
// same entries as the primary one. The directories themselves were range-checked when the extent opened.
using System.Buffers.Binary;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>Checks the grain tables of an open VMDK.</summary>
internal static class VmdkCheck
{
    private const int MaxReported = 50;
    private const int TableBytes = VmdkSparseHeader.GtEntries * 4;

    /// <summary>Counts the corruptions of every sparse extent of <paramref name="driver"/>, with the first ones in words.</summary>
    public static (long Corruptions, IReadOnlyList<string> Problems) Run(VmdkDriver driver, CancellationToken cancel)
    {
        long corruptions = 0;
        var problems = new List<string>();
        void Report(string message)
        {
            corruptions++;
            if (problems.Count < MaxReported) problems.Add(message);
        }
        foreach (var extent in driver.SparseExtents)
        {
            var h = extent.Header;
            var storage = extent.Storage;
            string name = storage.Name;
            long length = storage.Length;
            var gd = extent.Tables.Directory;
            uint[]? rgd = h.HasRedundantGd ? ReadDirectory(extent, h.RgdOffset, gd.Count) : null;
            var table = new byte[TableBytes];
            var redundant = new byte[TableBytes];
            for (int i = 0; i < gd.Count; i++)
            {
                cancel.ThrowIfCancellationRequested();
                uint gt = gd[i];
                if (rgd != null && (gt == 0) != (rgd[i] == 0))
                    Report($"{name}: grain directory entry {i} is {gt} but the redundant one is {rgd[i]}");
                if (gt == 0) continue;
                storage.ReadAt(gt * (long)VmdkSparseHeader.SectorSize, table);
                for (int slot = 0; slot < VmdkSparseHeader.GtEntries; slot++)
                {
                    uint sector = BinaryPrimitives.ReadUInt32LittleEndian(table.AsSpan(slot * 4));
                    if (sector == 0 || (sector == 1 && h.HasZeroGrain)) continue;
                    if (sector * (long)VmdkSparseHeader.SectorSize >= length)
                        Report($"{name}: grain {(long)i * VmdkSparseHeader.GtEntries + slot} points at sector {sector}, past the end of the file");
                }
                if (rgd is null || rgd[i] == 0) continue;
                if ((rgd[i] + (long)VmdkSparseHeader.GtSectors) * VmdkSparseHeader.SectorSize > length)
                {
                    Report($"{name}: redundant grain table {i} at sector {rgd[i]} lies past the end of the file");
                    continue;
                }
                storage.ReadAt(rgd[i] * (long)VmdkSparseHeader.SectorSize, redundant);
                if (!table.AsSpan().SequenceEqual(redundant))
                    Report($"{name}: grain table {i} (sector {gt}) and its redundant copy (sector {rgd[i]}) differ");
            }
        }
        return (corruptions, problems);
    }

    private static uint[] ReadDirectory(VmdkSparseExtent extent, long sector, int entries)
    {
        var raw = new byte[entries * 4L];
        extent.Storage.ReadAt(sector * VmdkSparseHeader.SectorSize, raw);
        var gd = new uint[entries];
        for (int i = 0; i < entries; i++) gd[i] = BinaryPrimitives.ReadUInt32LittleEndian(raw.AsSpan(i * 4));
        return gd;
    }
}
