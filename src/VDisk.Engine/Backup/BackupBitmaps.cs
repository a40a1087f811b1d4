// Dirty bitmaps as a backup's change detection (issue 11 "Change detection"; libvirt's incremental backups work the
// same way). Each point of a set adds a persistent, enabled bitmap to a qcow2 source, named after the set and the
// point, before the source is read; QEMU marks every cluster written after that. The next backup reads only what
// that bitmap marks, adds its own bitmap, and once its point is in the manifest removes the older one. A bitmap is
// trusted only when it is the one the previous point added, is consistent (qemu's rules, not in use: VDisk's own
// writes mark bitmaps in use), enabled, and the source's size is unchanged; otherwise the backup hashes every block
// and the point says why (ChangeDetectionNote).
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Operations;

namespace VDisk.Engine.Backup;

/// <summary>The dirty bitmaps a backup set keeps in its qcow2 sources.</summary>
internal static class BackupBitmaps
{
    private const string Prefix = "vdisk-backup-";

    /// <summary>The bitmap name of a set's point: vdisk-backup-SET-TIME.</summary>
    public static string NameFor(string setId, DateTimeOffset time) => $"{SetPrefix(setId)}{time.UtcDateTime:yyyyMMdd'T'HHmmss'Z'}";

    private static string SetPrefix(string setId) => $"{Prefix}{setId[..Math.Min(12, setId.Length)]}-";

    /// <summary>
    /// The guest ranges the previous point's bitmap marks dirty, read while the caller holds the source open for
    /// consistent reads; null with the reason when the bitmap cannot be trusted.
    /// </summary>
    public static (List<(long Offset, long Length)>? Dirty, string? Note) DirtyRanges(string source, BackupPointRecord last, long size)
    {
        if (last.Bitmap is null) return (null, "the previous point added no dirty bitmap to the source");
        if (!string.Equals(last.Source.Path, source, StringComparison.Ordinal))
            return (null, $"the previous point was taken from {last.Source.Path}");
        if (last.Source.VirtualSize != size)
            return (null, $"the source was resized since the previous point ({last.Source.VirtualSize} -> {size} bytes)");
        var bitmap = BitmapImage.List(source).FirstOrDefault(b => b.Name == last.Bitmap);
        if (bitmap is null) return (null, $"the source has no bitmap '{last.Bitmap}' any more");
        if (bitmap.InUse) return (null, $"the bitmap '{last.Bitmap}' is in use (inconsistent): the image was written by a program that did not update it, or QEMU stopped without saving it");
        if (!bitmap.Consistent) return (null, $"the bitmap '{last.Bitmap}' cannot be trusted: {bitmap.Problem}");
        if (!bitmap.Enabled) return (null, $"the bitmap '{last.Bitmap}' is disabled, so writes since then may not be marked");
        try
        {
            return (BitmapImage.Read(source, last.Bitmap).Select(r => (r.Offset, r.Length)).ToList(), null);
        }
        catch (VDiskException e)
        {
            return (null, $"the bitmap '{last.Bitmap}' cannot be read: {e.Message}");
        }
    }

    /// <summary>Adds the new point's bitmap to a qcow2 source; returns null with the reason when it cannot.</summary>
    public static (string? Name, string? Note) TryAdd(string source, string name)
    {
        int? version = BitmapImage.Qcow2Version(source);
        if (version is null) return (null, null); // other formats have no bitmaps: nothing to say
        if (version < 3) return (null, "the source is a qcow2 of compat 0.10, which cannot hold dirty bitmaps, so every backup hashes every block");
        try
        {
            BitmapImage.Add(source, name, BlockHash.BlockSize);
            return (name, null);
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.InUse)
        {
            return (null, null); // a VM writes it: opening it for the backup gives the error that says what to do
        }
        catch (VDiskException e) when (e.Kind is VDiskErrorKind.Unsupported or VDiskErrorKind.InvalidArgument or VDiskErrorKind.ReadOnly)
        {
            return (null, $"no dirty bitmap could be added to the source, so the next backup will hash every block: {e.Message}");
        }
    }

    /// <summary>Removes one bitmap from the source (best effort: a failure is a warning).</summary>
    public static void Remove(string source, string name)
    {
        try
        {
            BitmapImage.Remove(source, name);
        }
        catch (VDiskException e)
        {
            EngineWarnings.Warn($"{source}: the dirty bitmap '{name}' of a backup that did not complete could not be removed ({e.Message}); the next backup removes it.");
        }
    }

    /// <summary>Removes this set's bitmaps from the source except <paramref name="keep"/> (best effort: a failure is a warning).</summary>
    public static void RemoveOthers(string source, string setId, string? keep)
    {
        if (BitmapImage.Qcow2Version(source) is not >= 3) return;
        string mine = SetPrefix(setId);
        try
        {
            foreach (var bitmap in BitmapImage.List(source).Where(b => b.Name.StartsWith(mine, StringComparison.Ordinal) && b.Name != keep))
                BitmapImage.Remove(source, bitmap.Name);
        }
        catch (VDiskException e) when (e.Kind == VDiskErrorKind.InUse)
        {
            // A running VM holds the image (a hot backup): QEMU keeps the old bitmap up to date; a later offline backup removes it.
        }
        catch (VDiskException e)
        {
            EngineWarnings.Warn($"{source}: an older dirty bitmap of this backup set could not be removed ({e.Message}); the next backup removes it.");
        }
    }
}
