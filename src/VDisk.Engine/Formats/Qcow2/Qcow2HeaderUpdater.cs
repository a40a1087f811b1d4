// The one writer of an open image's header (qcow2.rst "Header", "Header extensions"). A change is made on a
// copy, serialised with everything this engine does not understand (unknown fields up to header_length,
// unknown extensions, the feature name table), compared with the bytes on disk, and only the changed bytes
// are written: flipping a feature bit or moving a table is a write of a few bytes inside one sector, which
// a power cut cannot tear; a change across sectors (a new backing file) is written in phases that each leave
// a valid header (Qcow2HeaderLayout). A header that no longer fits in the first cluster is refused, never truncated.
using VDisk.Engine.Core;
using VDisk.Engine.Storage;

namespace VDisk.Engine.Formats.Qcow2;

/// <summary>Owns the header of an open image. Not thread-safe: the image holds its lock.</summary>
internal sealed class Qcow2HeaderUpdater
{
    /// <summary>The name barriers before header writes go by (see <see cref="Qcow2WriteOrder.SkipBarrierBefore"/>).</summary>
    public const string BarrierName = "header";
    /// <summary>The name of the barriers between the phases of one header change (see <see cref="Qcow2HeaderLayout"/>).</summary>
    public const string StepBarrierName = "header step";
    private readonly Qcow2WriteOrder _order;
    private byte[] _onDisk;

    public Qcow2HeaderUpdater(Qcow2WriteOrder order, Qcow2Header header, byte[] cluster0)
    {
        _order = order;
        Header = header;
        _onDisk = cluster0;
    }

    /// <summary>The current header. Read it freely; change it only through <see cref="Update"/>.</summary>
    public Qcow2Header Header { get; private set; }

    /// <summary>
    /// Applies <paramref name="change"/> and writes the bytes that differ. With <paramref name="durable"/> the change
    /// is flushed to the medium before this returns (and everything written before it is made durable first).
    /// </summary>
    public void Update(Action<Qcow2Header> change, bool durable = true) => Apply(change, durable, null, 0);

    /// <summary>
    /// Applies <paramref name="change"/> durably only when it switches the header from the old state to the new one
    /// with a single write inside one sector (after the bytes the old header does not reference), so that a power cut
    /// leaves exactly one of the two; otherwise nothing is written and the change is refused, naming
    /// <paramref name="what"/> and the image <paramref name="path"/>. <paramref name="nameClearance"/> keeps that many bytes free between the extensions and
    /// the backing file name (see <see cref="Qcow2HeaderLayout.PlaceBackingName"/>).
    /// </summary>
    public void UpdateAtomically(Action<Qcow2Header> change, string what, string path, int nameClearance = 0)
        => Apply(change, true, (what, path), nameClearance);

    private void Apply(Action<Qcow2Header> change, bool durable, (string What, string Path)? atomic, int nameClearance)
    {
        var next = Header.Clone();
        change(next);
        var bytes = Qcow2HeaderLayout.PlaceBackingName(next.Serialize(mayDropFeatureTable: false), _onDisk, nameClearance);
        var (onDisk, phases) = Qcow2HeaderLayout.Plan(_onDisk, bytes, out int referenced); // see Qcow2HeaderLayout: no phase can be torn into an unreadable header
        if (atomic is { } a && referenced > 1)
            throw VDiskException.Unsupported(a.Path, $"{a.What} would change the header in {referenced} sectors, which a power cut could tear " +
                "(the header extensions or the backing file name lie across a sector boundary); nothing was changed.");
        for (int phase = 0; phase < phases.Count; phase++)
        {
            if (phase > 0 || durable) _order.Barrier(phase == 0 ? BarrierName : StepBarrierName);
            foreach (var (offset, length) in phases[phase])
                _order.WriteMetadata(Qcow2MetadataKind.Header, new HostOffset(offset), onDisk.AsSpan(offset, length));
        }
        if (durable && phases.Count > 0) _order.Barrier("after header");
        Header = next;
        _onDisk = onDisk;
    }

}
