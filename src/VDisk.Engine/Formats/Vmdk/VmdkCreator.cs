// Creating VMDK images (QEMU block/vmdk.c vmdk_co_do_create, vmdk_init_extent, filename_decompose;
// VMware Virtual Disk Format 1.1 "Hosted Sparse Extents", "Stream-Optimized Compressed Sparse Extents"):
// the five subformats with QEMU's layouts, descriptor and extent file names.
//
// Multi-file images and a failed create. CreateImage and ConvertImage write the main file under a
// temporary name, open it (convert fills it through the driver) and rename only that file into place.
// So the extent files are written under their final names from the start and the descriptor names
// them; the descriptor can be opened under its temporary name because extents resolve against its
// folder. Cleaning up: if writing fails here, the extents written so far are deleted; if the caller
// fails later, CreateImage.TryDelete(temp) calls DeleteExtentsOf, which deletes the extents the
// temporary descriptor names. Existing extent files are refused unless the caller allows overwriting
// (checked in Validate, before any file is touched); with overwriting, as with qemu-img, old extent
// files are replaced as soon as the new ones are written, so a failed overwrite loses them.
using System.Numerics;
using System.Text;
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

    private sealed record PlannedFile(string FinalPath, long Sectors, bool Flat);

    /// <summary>The subformat <paramref name="requested"/> stands for (Default is monolithicSparse, as in qemu-img).</summary>
    public static ImageSubformat Resolve(ImageSubformat requested) => requested == ImageSubformat.Default ? ImageSubformat.MonolithicSparse : requested;

    /// <summary>
    /// Checks options the way qemu-img does, and that no extent file would replace an existing file unless
    /// <paramref name="overwrite"/>, before any file is touched. <paramref name="path"/> is the full path of the image.
    /// </summary>
    public static void Validate(CreateOptions o, string path, bool overwrite)
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
        if (subformat is ImageSubformat.TwoGbMaxExtentSparse or ImageSubformat.TwoGbMaxExtentFlat && (size + SplitExtentBytes - 1) / SplitExtentBytes > VmdkDescriptor.MaxExtents)
            throw VDiskException.Invalid(path, $"A {size}-byte disk needs more than {VmdkDescriptor.MaxExtents} extents of 2 GiB; use a monolithic subformat.");
        foreach (var f in Plan(path, subformat, size).Where(f => f.FinalPath != path && File.Exists(f.FinalPath) && !overwrite))
            throw new VDiskException(VDiskErrorKind.AlreadyExists, path, $"{path}: extent file '{f.FinalPath}' already exists (use -Force to overwrite it).");
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
    /// Writes the image whose final full path is <paramref name="path"/>: its main file (descriptor or monolithic sparse
    /// file) into <paramref name="temp"/>, its extent files under their final names. <paramref name="backingName"/> is the
    /// parent's name as stored, relative to the image's folder or absolute; the parent must be a VMDK image.
    /// </summary>
    public static void Write(string temp, string path, CreateOptions o, string? backingName, ImageFormat? backingFormat, CancellationToken cancel)
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
        var lines = files.Where(f => f.Sectors > 0).Select((f, i) => new VmdkExtentLine("RW", f.Sectors, f.Flat ? "FLAT" : "SPARSE",
            Path.GetFileName(f.FinalPath), 0, i + 1)).ToList();
        string descriptor = VmdkDescriptor.Build(CreateTypeName(subformat), VmdkDescriptor.NewCid(VmdkDescriptor.NoParent), parentCid, backingName, lines, size);
        var written = new List<string>();
        try
        {
            foreach (var f in files)
            {
                cancel.ThrowIfCancellationRequested();
                bool main = f.FinalPath == path;
                using var storage = FileStorage.Create(main ? temp : f.FinalPath, overwrite: !main);
                if (!main) written.Add(f.FinalPath);
                if (f.Flat) RawDriver.Create(storage, f.Sectors * Sector, o.Preallocation, cancel: cancel);
                else if (f.Sectors > 0) WriteSparseExtent(storage, f.Sectors, o.ClusterSize / Sector, subformat == ImageSubformat.StreamOptimized, main ? descriptor : null, path);
                else WriteDescriptorFile(storage, descriptor);
                storage.Flush();
            }
        }
        catch
        {
            foreach (var extent in written) TryDelete(extent);
            throw;
        }
    }

    /// <summary>Full paths of every file an image created at <paramref name="path"/> would write (descriptor first).</summary>
    public static IEnumerable<string> FilesFor(string path, ImageSubformat subformat, long size)
        => Plan(path, Resolve(subformat), size).Select(f => f.FinalPath);

    /// <summary>
    /// Deletes the extent files named by <paramref name="file"/> when it is a VMDK descriptor (relative names inside its
    /// folder only). For the temporary descriptor of a failed create or convert; anything else is left alone.
    /// </summary>
    public static void DeleteExtentsOf(string file)
    {
        try
        {
            if (!File.Exists(file) || new FileInfo(file).Length > VmdkDescriptor.MaxBytes) return;
            byte[] bytes = File.ReadAllBytes(file);
            if (!bytes.AsSpan().StartsWith(Encoding.UTF8.GetBytes(VmdkDescriptor.Signature))) return;
            foreach (var line in VmdkDescriptor.Parse(bytes, file).Extents.Where(l => l.FileName != null && !Path.IsPathRooted(l.FileName)))
                TryDelete(VmdkOpener.ResolveExtentPath(file, line));
        }
        catch (Exception e) when (e is VDiskException or IOException or UnauthorizedAccessException)
        {
            // best effort, like the deletion of the temporary file itself
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
            byte[] text = Encoding.UTF8.GetBytes(descriptor);
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
        byte[] text = Encoding.UTF8.GetBytes(descriptor);
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
        void Add(string finalName, long sectors, bool flat) => files.Add(new PlannedFile(Path.Combine(folder, finalName), sectors, flat));
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
