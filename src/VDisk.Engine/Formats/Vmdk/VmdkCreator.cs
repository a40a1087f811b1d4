// Creating VMDK images (QEMU block/vmdk.c vmdk_co_do_create, vmdk_init_extent, filename_decompose;
// VMware Virtual Disk Format 1.1 "Hosted Sparse Extents", "Stream-Optimized Compressed Sparse Extents"):
// the five subformats with QEMU's layouts, descriptor and extent file names.
//
// Multi-file images and a failed create: every file (extents and descriptor) is first written under a
// temporary name in the destination folder, while the descriptor already names the extents' final names.
// Only when all are complete are the extents renamed into place, then the descriptor last. So a failure
// or cancellation before that point leaves no new file behind (the temporaries are deleted) and never
// destroys a file that -Force would have replaced; a failure during the renames (rare: same folder)
// removes the extents it had renamed that did not exist before.
using System.Numerics;
using VDisk.Engine.Core;
using VDisk.Engine.Formats.Raw;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Vmdk;

/// <summary>Writes new VMDK images.</summary>
internal static class VmdkCreator
{
    /// <summary>Size of each extent of the twoGbMaxExtent subformats (QEMU's split_size).</summary>
    public const long SplitExtentBytes = 0x80000000;
    /// <summary>Sectors reserved for an embedded descriptor (QEMU's DESC_SIZE).</summary>
    public const int EmbeddedDescriptorSectors = 20;
    private const int Sector = VmdkSparseHeader.SectorSize;
    private const int MinGrainBytes = 4096, MaxGrainBytes = 1 << 20;

    private sealed record PlannedFile(string FinalPath, string TempPath, long Sectors, bool Flat);

    /// <summary>The subformat <paramref name="requested"/> stands for (Default is monolithicSparse, as in qemu-img).</summary>
    public static ImageSubformat Resolve(ImageSubformat requested) => requested == ImageSubformat.Default ? ImageSubformat.MonolithicSparse : requested;

    /// <summary>Checks options the way qemu-img does, before any file is touched.</summary>
    public static void Validate(CreateOptions o, string path)
    {
        var subformat = Resolve(o.Subformat);
        if (subformat is not (ImageSubformat.MonolithicSparse or ImageSubformat.MonolithicFlat or ImageSubformat.TwoGbMaxExtentSparse
            or ImageSubformat.TwoGbMaxExtentFlat or ImageSubformat.StreamOptimized))
            throw VDiskException.Invalid(path, $"Subformat {o.Subformat} is not a VMDK subformat (use MonolithicSparse, MonolithicFlat, TwoGbMaxExtentSparse, TwoGbMaxExtentFlat or StreamOptimized).");
        long size = o.Size ?? 0;
        if (size <= 0)
            throw VDiskException.Invalid(path, "A VMDK image needs a size of at least one sector.");
        if (size / Sector > VmdkDescriptor.MaxDiskSectors)
            throw VDiskException.Invalid(path, $"A {size}-byte disk is too large for VMDK.");
        bool flat = IsFlat(subformat);
        if (flat)
        {
            if (o.BackingPath != null) throw VDiskException.Invalid(path, "Flat VMDK images cannot have a backing file; use a sparse subformat.");
            if (o.Preallocation == Preallocation.Metadata) throw VDiskException.Invalid(path, "Preallocation 'Metadata' is not valid for flat VMDK images (use Off, Falloc or Full).");
            return;
        }
        if (o.Preallocation != Preallocation.Off)
            throw VDiskException.Invalid(path, $"Preallocation '{o.Preallocation}' is only supported for the flat VMDK subformats.");
        if (o.ClusterSize < MinGrainBytes || o.ClusterSize > MaxGrainBytes || !BitOperations.IsPow2(o.ClusterSize))
            throw VDiskException.Invalid(path, $"Grain size {o.ClusterSize} is invalid: it must be a power of two from {MinGrainBytes} to {MaxGrainBytes} bytes.");
        if (o.CompressionType != CompressionType.Zlib)
            throw VDiskException.Invalid(path, "streamOptimized VMDK images compress with zlib only.");
        long extentBytes = subformat == ImageSubformat.TwoGbMaxExtentSparse ? Math.Min(size, SplitExtentBytes) : size;
        if (SparseHeader(extentBytes / Sector, o.ClusterSize / Sector, false).GdEntries > VmdkSparseHeader.MaxGdEntries)
            throw VDiskException.Invalid(path, $"A {size}-byte disk is too large for {o.ClusterSize}-byte grains; use larger grains.");
    }

    /// <summary>
    /// Creates the image at <paramref name="path"/> (a full path whose folder exists). <paramref name="backingName"/> is
    /// the parent's name as stored, relative to the image's folder or absolute; the parent must be a VMDK image.
    /// </summary>
    public static void Create(string path, CreateOptions o, string? backingName, ImageFormat? backingFormat, bool overwrite,
        IProgress<long>? progress, CancellationToken cancel)
    {
        var subformat = Resolve(o.Subformat);
        long size = o.Size!.Value;
        uint parentCid = VmdkDescriptor.NoParent;
        if (backingName != null)
        {
            if (backingFormat != ImageFormat.Vmdk)
                throw VDiskException.Invalid(path, $"The backing file of a VMDK image must be a VMDK image, not {(backingFormat is { } f ? FormatProbe.Name(f) : "unknown")}.");
            parentCid = ParentCid(path, backingName);
        }
        var files = Plan(path, subformat, size);
        foreach (var f in files.Where(f => f.FinalPath != path && File.Exists(f.FinalPath) && !overwrite))
            throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path}: extent file '{f.FinalPath}' already exists (use -Force to overwrite it).");

        var existedBefore = files.Where(f => File.Exists(f.FinalPath)).Select(f => f.FinalPath).ToHashSet();
        var renamed = new List<string>();
        try
        {
            var lines = files.Where(f => f.Sectors > 0).Select((f, i) => new VmdkExtentLine("RW", f.Sectors, f.Flat ? "FLAT" : "SPARSE",
                Path.GetFileName(f.FinalPath), 0, i + 1)).ToList();
            string descriptor = VmdkDescriptor.Build(CreateTypeName(subformat), VmdkDescriptor.NewCid(VmdkDescriptor.NoParent), parentCid, backingName, lines, size);
            foreach (var f in files)
            {
                cancel.ThrowIfCancellationRequested();
                using var storage = FileStorage.Create(f.TempPath, overwrite: false);
                if (f.Flat) RawDriver.Create(storage, f.Sectors * Sector, o.Preallocation, cancel);
                else if (f.Sectors > 0) WriteSparseExtent(storage, f.Sectors, o.ClusterSize / Sector, subformat == ImageSubformat.StreamOptimized,
                    f.FinalPath == path ? descriptor : null, path);
                else WriteDescriptorFile(storage, descriptor);
                storage.Flush();
            }
            cancel.ThrowIfCancellationRequested();
            foreach (var f in files.OrderBy(f => f.FinalPath == path))
            {
                File.Move(f.TempPath, f.FinalPath, overwrite);
                renamed.Add(f.FinalPath);
            }
            progress?.Report(size);
        }
        catch (Exception e)
        {
            foreach (var f in files) TryDelete(f.TempPath);
            foreach (var r in renamed.Where(r => !existedBefore.Contains(r))) TryDelete(r);
            if (e is UnauthorizedAccessException or IOException and not FileNotFoundException)
                throw new VDiskException(e is UnauthorizedAccessException ? VDiskErrorKind.ReadOnly : VDiskErrorKind.IoError, path, $"{path}: {e.Message}", e);
            throw;
        }
    }

    /// <summary>The header QEMU writes for a sparse extent of <paramref name="capacity"/> sectors (vmdk_init_extent).</summary>
    internal static VmdkSparseHeader SparseHeader(long capacity, long grainSectors, bool compressed)
    {
        var h = new VmdkSparseHeader
        {
            Version = compressed ? 3u : 1u,
            Flags = VmdkSparseHeader.FlagNewlineDetect | (compressed
                ? VmdkSparseHeader.FlagCompressed | VmdkSparseHeader.FlagMarkers
                : VmdkSparseHeader.FlagRedundantGd),
            CompressAlgorithm = compressed ? VmdkSparseHeader.CompressionDeflate : (ushort)0,
            Capacity = capacity,
            GrainSize = grainSectors,
            DescriptorOffset = 1,
            DescriptorSize = EmbeddedDescriptorSectors,
        };
        long tables = h.GdEntries * VmdkSparseHeader.GtSectors;
        if (compressed)
        {
            h.GdOffset = -1; // GD_AT_END: the footer holds the real offset
            h.Overhead = AlignUp(1 + EmbeddedDescriptorSectors, grainSectors);
        }
        else
        {
            h.RgdOffset = 1 + EmbeddedDescriptorSectors;
            h.GdOffset = h.RgdOffset + h.GdSectors + tables;
            h.Overhead = AlignUp(h.GdOffset + h.GdSectors + tables, grainSectors);
        }
        return h;
    }

    // A sparse extent: header, embedded descriptor (or an empty reserved area), then either both directories with
    // their (zero) grain tables, or for a stream the empty tail.
    private static void WriteSparseExtent(IStorage storage, long capacity, long grainSectors, bool compressed, string? descriptor, string path)
    {
        var h = SparseHeader(capacity, grainSectors, compressed);
        var head = new byte[(1 + EmbeddedDescriptorSectors) * Sector];
        h.WriteTo(head);
        if (descriptor != null)
        {
            byte[] text = System.Text.Encoding.UTF8.GetBytes(descriptor);
            if (text.Length > EmbeddedDescriptorSectors * Sector)
                throw VDiskException.Invalid(path, $"The descriptor ({text.Length} bytes) does not fit the {EmbeddedDescriptorSectors * Sector} bytes reserved for it; use a shorter backing file name.");
            text.CopyTo(head, Sector);
        }
        storage.WriteAt(0, head);
        storage.SetLength(h.Overhead * Sector);
        if (compressed)
        {
            VmdkStreamWriter.WriteEmptyTail(storage, h);
            return;
        }
        foreach (long directory in new[] { h.RgdOffset, h.GdOffset })
        {
            var gd = new byte[h.GdSectors * Sector];
            for (long i = 0; i < h.GdEntries; i++)
                System.Buffers.Binary.BinaryPrimitives.WriteUInt32LittleEndian(gd.AsSpan((int)(i * 4)), (uint)(directory + h.GdSectors + i * VmdkSparseHeader.GtSectors));
            storage.WriteAt(directory * Sector, gd);
        }
    }

    private static void WriteDescriptorFile(IStorage storage, string descriptor)
    {
        byte[] text = System.Text.Encoding.UTF8.GetBytes(descriptor);
        storage.WriteAt(0, text);
        storage.SetLength(text.Length);
    }

    // The files of each subformat with QEMU's names: d.vmdk, d-flat.vmdk, d-s001.vmdk..., d-f001.vmdk...
    // Sectors == 0 marks a descriptor file; the main file comes last.
    private static List<PlannedFile> Plan(string path, ImageSubformat subformat, long size)
    {
        string folder = Path.GetDirectoryName(path) ?? ".";
        string name = Path.GetFileName(path);
        int dot = name.LastIndexOf('.');
        string prefix = dot < 0 ? name : name[..dot], postfix = dot < 0 ? "" : name[dot..];
        var files = new List<PlannedFile>();
        void Add(string finalName, long sectors, bool flat) => files.Add(new PlannedFile(Path.Combine(folder, finalName),
            Path.Combine(folder, $".{finalName}.vdisk-{Guid.NewGuid():N}.tmp"), sectors, flat));
        switch (subformat)
        {
            case ImageSubformat.MonolithicFlat:
                Add($"{prefix}-flat{postfix}", size / Sector, true);
                break;
            case ImageSubformat.TwoGbMaxExtentSparse:
            case ImageSubformat.TwoGbMaxExtentFlat:
                bool flat = subformat == ImageSubformat.TwoGbMaxExtentFlat;
                for (long done = 0, index = 1; done < size; done += SplitExtentBytes, index++)
                    Add($"{prefix}-{(flat ? 'f' : 's')}{index:000}{postfix}", Math.Min(SplitExtentBytes, size - done) / Sector, flat);
                break;
        }
        bool monolithic = subformat is ImageSubformat.MonolithicSparse or ImageSubformat.StreamOptimized;
        Add(name, monolithic ? size / Sector : 0, false);
        return files;
    }

    private static uint ParentCid(string path, string backingName)
    {
        string full = Chain.ImageChain.ResolveBackingPath(path, backingName);
        using var parent = Open(FileStorage.Open(full, write: false));
        return parent.Cid;
    }

    private static VmdkDriver Open(IStorage storage)
    {
        try
        {
            return VmdkDriver.Open(storage, writable: false);
        }
        catch
        {
            storage.Dispose();
            throw;
        }
    }

    private static string CreateTypeName(ImageSubformat subformat) => subformat switch
    {
        ImageSubformat.MonolithicFlat => "monolithicFlat",
        ImageSubformat.TwoGbMaxExtentSparse => "twoGbMaxExtentSparse",
        ImageSubformat.TwoGbMaxExtentFlat => "twoGbMaxExtentFlat",
        ImageSubformat.StreamOptimized => "streamOptimized",
        _ => "monolithicSparse",
    };

    private static bool IsFlat(ImageSubformat s) => s is ImageSubformat.MonolithicFlat or ImageSubformat.TwoGbMaxExtentFlat;

    private static long AlignUp(long value, long alignment) => (value + alignment - 1) / alignment * alignment;

    private static void TryDelete(string file)
    {
        try { File.Delete(file); } catch (IOException) { } catch (UnauthorizedAccessException) { }
    }
}
