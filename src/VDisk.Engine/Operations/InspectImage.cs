// Image information and chain listing (DESIGN.md "Operations": info), what `qemu-img info` and
// `qemu-img info --backing-chain` report, as objects. A malformed backing file name is an error about the image;
// a chain that breaks further down is a problem reported with the information.
using VDisk.Engine.Chain;
using VDisk.Engine.Core;

namespace VDisk.Engine.Operations;

/// <summary>What `qemu-img info` says about one image.</summary>
public sealed record ImageInfo
{
    public required string Path { get; init; }
    public required ImageFormat Format { get; init; }
    public required long VirtualSize { get; init; }
    /// <summary>Bytes the host stores for the image's files (sparse files count only allocated blocks).</summary>
    public required long FileSize { get; init; }
    /// <summary>Apparent length of the image's files.</summary>
    public required long FileLength { get; init; }
    /// <summary>The backing file name as stored in the image.</summary>
    public string? BackingPath { get; init; }
    /// <summary>The backing file name resolved against the image's folder.</summary>
    public string? BackingFullPath { get; init; }
    public ImageFormat? BackingFormat { get; init; }
    /// <summary>Number of backing images beneath this one that could be opened.</summary>
    public int ChainDepth { get; init; }
    /// <summary>Why the backing chain could not be followed to its end, or null.</summary>
    public string? ChainProblem { get; init; }
    public required FormatDetails Details { get; init; }
}

/// <summary>One layer of a backing chain.</summary>
public sealed record ChainNodeInfo
{
    /// <summary>0 for the image itself, 1 for its backing image, ...</summary>
    public required int Depth { get; init; }
    public required string Path { get; init; }
    public required ImageFormat Format { get; init; }
    public required long VirtualSize { get; init; }
    public required long FileSize { get; init; }
    /// <summary>Guest bytes whose data this layer holds (allocated, compressed or not).</summary>
    public required long AllocatedBytes { get; init; }
    public string? BackingPath { get; init; }
    public ImageFormat? BackingFormat { get; init; }
}

/// <summary>Reads image information without changing anything.</summary>
public static class InspectImage
{
    /// <summary>Information about the image at <paramref name="path"/>. Reads without locking (like qemu-img info -U), so images of running VMs can be inspected.</summary>
    public static ImageInfo Run(string path, ImageFormat? format = null, CancellationToken cancel = default)
    {
        using var driver = ImageChain.OpenFile(path, format, writable: false, forceShare: true);
        string full = System.IO.Path.GetFullPath(path);
        int depth = 0;
        string? problem = null;
        if (driver.Backing != null)
        {
            // A name no file can have is damage to this image's own metadata (an error); a backing chain that cannot
            // be followed further down is reported beside the information (ChainProblem).
            StoredFileNames.CheckWellFormed(full, driver.Backing.Path, "backing file name");
            try
            {
                foreach (var layer in ImageChain.Walk(full, format, forceShare: true))
                {
                    layer.Driver.Dispose();
                    cancel.ThrowIfCancellationRequested();
                    depth = layer.Depth;
                }
            }
            catch (VDiskException e)
            {
                problem = e.Message;
            }
        }
        var backing = driver.Backing;
        return new ImageInfo
        {
            Path = full,
            Format = driver.Format,
            VirtualSize = driver.VirtualSize,
            FileSize = driver.Files.Sum(f => f.AllocatedBytes),
            FileLength = driver.Files.Sum(f => f.Length),
            BackingPath = backing?.Path,
            BackingFullPath = backing is null ? null : TryResolve(full, backing.Path),
            BackingFormat = backing?.Format,
            ChainDepth = depth,
            ChainProblem = problem,
            Details = driver.Details,
        };
    }

    /// <summary>One node per layer of the chain, top first (read without locking). Throws when the chain is broken, naming the chain so far.</summary>
    public static IReadOnlyList<ChainNodeInfo> Chain(string path, ImageFormat? format = null, CancellationToken cancel = default)
    {
        var nodes = new List<ChainNodeInfo>();
        foreach (var layer in ImageChain.Walk(path, format, forceShare: true))
        {
            using var driver = layer.Driver;
            nodes.Add(new ChainNodeInfo
            {
                Depth = layer.Depth,
                Path = layer.Path,
                Format = driver.Format,
                VirtualSize = driver.VirtualSize,
                FileSize = driver.Files.Sum(f => f.AllocatedBytes),
                AllocatedBytes = AllocatedBytes(driver, cancel),
                BackingPath = driver.Backing?.Path,
                BackingFormat = driver.Backing?.Format,
            });
        }
        return nodes;
    }

    /// <summary>Guest bytes a single layer holds data for.</summary>
    public static long AllocatedBytes(IImageDriver driver, CancellationToken cancel = default)
    {
        long total = 0;
        for (long offset = 0; offset < driver.VirtualSize;)
        {
            cancel.ThrowIfCancellationRequested();
            var m = driver.Map(offset, driver.VirtualSize - offset);
            if (m.Kind is ExtentKind.Data or ExtentKind.Compressed) total += m.Length;
            offset += m.Length;
        }
        return total;
    }

    private static string? TryResolve(string image, string stored)
    {
        try { return ImageChain.ResolveBackingPath(image, stored); }
        catch (VDiskException) { return null; }
    }
}
