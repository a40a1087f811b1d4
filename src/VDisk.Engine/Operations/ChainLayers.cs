// The backing chain as commit, pull and rebase plan with it (DESIGN.md "Chain"): every layer opened once,
// read-only and locked the way QEMU locks (an image a VM writes is refused here, before anything changes), with
// the format it was opened as, so the operation reopens each layer exactly the same way, and the facts the
// plan needs (files, internal snapshots, size). Layers are found again by identity (device and inode), so a
// base named through a symbolic link is still the base.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Qcow2;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Operations;

/// <summary>One layer of a chain, as found when planning.</summary>
/// <param name="Depth">0 for the top image.</param>
/// <param name="Path">Full path of the layer's main file.</param>
/// <param name="Format">The format it was opened as (recorded by the layer above, or probed).</param>
/// <param name="VirtualSize">Its virtual size.</param>
/// <param name="StoredBackingName">The backing name it stores, as stored, or null.</param>
/// <param name="SnapshotCount">Internal snapshots it holds (qcow2).</param>
/// <param name="Files">Every file of the layer (a VMDK's extents too).</param>
internal sealed record PlannedLayer(int Depth, string Path, ImageFormat Format, long VirtualSize, string? StoredBackingName,
    int SnapshotCount, IReadOnlyList<string> Files);

internal static class ChainLayers
{
    /// <summary>The chain of <paramref name="top"/>, top first. Missing files, loops and bad names throw as ImageChain does.</summary>
    public static List<PlannedLayer> Read(string top, ImageFormat? format, CancellationToken cancel)
    {
        var layers = new List<PlannedLayer>();
        foreach (var layer in ImageChain.Walk(top, format))
        {
            using var driver = layer.Driver;
            cancel.ThrowIfCancellationRequested();
            layers.Add(new PlannedLayer(layer.Depth, layer.Path, driver.Format, driver.VirtualSize, driver.Backing?.Path,
                (driver as Qcow2Driver)?.Header.SnapshotCount ?? 0,
                driver.Files.Select(f => System.IO.Path.GetFullPath(f.Name)).ToList()));
        }
        return layers;
    }

    /// <summary>The depth of the layer that is the file <paramref name="path"/> names, or -1.</summary>
    public static int DepthOf(IReadOnlyList<PlannedLayer> layers, string path)
        => layers.FirstOrDefault(l => HostFileInfo.SameFile(l.Path, path))?.Depth ?? -1;

    /// <summary>"a -> b -> c", for messages.</summary>
    public static string Describe(IReadOnlyList<PlannedLayer> layers) => string.Join(" -> ", layers.Select(l => StoredFileNames.Printable(l.Path)));

    /// <summary>
    /// The name an image in <paramref name="imagePath"/> stores for <paramref name="backingPath"/>: relative to that
    /// folder when <paramref name="relative"/>, else the full path.
    /// </summary>
    public static string StoredName(string imagePath, string backingPath, bool relative)
        => relative ? System.IO.Path.GetRelativePath(System.IO.Path.GetDirectoryName(imagePath) ?? ".", backingPath) : backingPath;
}
