// The power-loss simulator (DESIGN.md "Power-loss simulator"): a storage that records every change and can
// say what the medium might hold if power failed at any moment — everything written before the last
// completed flush, plus any subset, in any order, of the writes issued since (a disk's write cache
// reorders freely and loses what it had not written; only a flush is a barrier). Every metadata-changing
// operation's tests run under it.
namespace VDisk.Engine.Storage;

/// <summary>
/// Wraps a storage (which keeps receiving every call) and records the changes, so crash images can be made
/// afterwards. The content the wrapped storage had when wrapped counts as durable.
/// </summary>
public sealed class PowerLossStorage : StorageWrapper
{
    private readonly object _lock = new();
    private readonly byte[] _initial;
    private readonly List<Change> _log = new();

    /// <summary>Starts recording on top of <paramref name="inner"/> (owned).</summary>
    public PowerLossStorage(IStorage inner) : base(inner)
    {
        _initial = new byte[inner.Length];
        inner.ReadAt(0, _initial);
    }

    /// <summary>One recorded change: a write, a zeroed or discarded range, a resize, or a flush (a barrier).</summary>
    private abstract record Change;
    private sealed record WriteChange(long Offset, byte[] Data) : Change;
    private sealed record ZeroChange(long Offset, long Length, bool Extends) : Change;
    private sealed record ResizeChange(long Length) : Change;
    private sealed record FlushChange : Change;

    /// <summary>Every change so far, in order: what it was, where, and how long (for write-order assertions).</summary>
    public IReadOnlyList<RecordedChange> Changes
    {
        get
        {
            lock (_lock)
                return _log.Select(c => c switch
                {
                    WriteChange w => new RecordedChange(RecordedChangeKind.Write, w.Offset, w.Data.Length),
                    ZeroChange z => new RecordedChange(z.Extends ? RecordedChangeKind.Zero : RecordedChangeKind.Discard, z.Offset, z.Length),
                    ResizeChange r => new RecordedChange(RecordedChangeKind.Resize, r.Length, 0),
                    _ => new RecordedChange(RecordedChangeKind.Flush, 0, 0),
                }).ToList();
        }
    }

    /// <summary>Number of flushes recorded so far.</summary>
    public int FlushCount { get { lock (_lock) return _log.Count(c => c is FlushChange); } }

    public override void WriteAt(long offset, ReadOnlySpan<byte> data)
    {
        Inner.WriteAt(offset, data);
        Record(new WriteChange(offset, data.ToArray()));
    }

    public override void WriteZeroes(long offset, long length)
    {
        Inner.WriteZeroes(offset, length);
        Record(new ZeroChange(offset, length, Extends: true));
    }

    public override void Discard(long offset, long length)
    {
        Inner.Discard(offset, length);
        Record(new ZeroChange(offset, length, Extends: false));
    }

    public override void Preallocate(long offset, long length)
    {
        long before = Inner.Length;
        Inner.Preallocate(offset, length);
        if (Inner.Length != before) Record(new ResizeChange(Inner.Length));
    }

    public override void SetLength(long length)
    {
        Inner.SetLength(length);
        Record(new ResizeChange(length));
    }

    public override void Flush()
    {
        Inner.Flush();
        Record(new FlushChange());
    }

    /// <summary>
    /// Crash images at the moment just before each recorded flush, and at the end: for each, the durable content plus
    /// subsets of the changes issued since the previous flush, chosen by <paramref name="subsetsPerPoint"/> with
    /// <paramref name="random"/> (all, none, in-order prefixes, reverse order, random subsets in random order, every
    /// subset when at most four writes are pending, and torn writes that keep only some of their 512-byte sectors).
    /// Any crash at any moment equals one of these (a crash between two flushes keeps a subset of what the second
    /// flush would have found pending).
    /// </summary>
    public IEnumerable<CrashImage> CrashImages(Random random, int subsetsPerPoint)
    {
        Change[] log;
        lock (_lock) log = _log.ToArray();
        var durable = new Medium(_initial);
        int flushes = 0, segmentStart = 0;
        for (int i = 0; i <= log.Length; i++)
        {
            if (i < log.Length && log[i] is not FlushChange) continue;
            var pending = log[segmentStart..i];
            foreach (var (name, chosen) in Subsets(pending, random, subsetsPerPoint))
            {
                var medium = durable.Clone();
                foreach (var change in chosen) medium.Apply(change);
                yield return new CrashImage(flushes, i, $"before flush {flushes} (change {i}), {name} of {pending.Length} pending", medium.ToArray());
            }
            foreach (var change in pending) durable.Apply(change);
            flushes++;
            segmentStart = i + 1;
        }
    }

    private void Record(Change change)
    {
        lock (_lock) _log.Add(change);
    }

    private static IEnumerable<(string Name, IReadOnlyList<Change> Chosen)> Subsets(Change[] pending, Random random, int count)
    {
        yield return ("none", Array.Empty<Change>());
        if (pending.Length == 0) yield break;
        yield return ("all", pending);
        if (pending.Length == 1)
        {
            // One write can still be torn when it spans sectors: each sector of it lands or not.
            var sectors = Sectors(pending[0]).ToArray();
            for (int n = 0; n < count && sectors.Length > 1; n++)
            {
                var torn = sectors.Where(_ => random.Next(2) == 0).ToArray();
                yield return ($"{torn.Length} of the {sectors.Length} sectors of the one pending write", torn);
            }
            yield break;
        }
        yield return ("all in reverse order", pending.Reverse().ToArray());
        if (pending.Length <= 4)
        {
            // Few writes: every proper subset, so one landing without another is always among the crash images.
            for (int mask = 1; mask < (1 << pending.Length) - 1; mask++)
                yield return ($"subset {Convert.ToString(mask, 2).PadLeft(pending.Length, '0')}", pending.Where((_, i) => (mask >> i & 1) != 0).ToArray());
        }
        for (int n = 0; n < count; n++)
        {
            switch (n % 3)
            {
                case 0:
                    int cut = random.Next(1, pending.Length);
                    yield return ($"first {cut}", pending[..cut]);
                    break;
                case 1:
                    var subset = pending.Where(_ => random.Next(2) == 0).OrderBy(_ => random.Next()).ToArray();
                    yield return ($"random {subset.Length} in random order", subset);
                    break;
                default:
                    var torn = pending.SelectMany(c => Sectors(c)).Where(_ => random.Next(2) == 0).OrderBy(_ => random.Next()).ToArray();
                    yield return ($"{torn.Length} torn sectors in random order", torn);
                    break;
            }
        }
    }

    // A write as the 512-byte sector writes a disk may complete independently.
    private static IEnumerable<Change> Sectors(Change change)
    {
        if (change is not WriteChange w)
        {
            yield return change;
            yield break;
        }
        for (long at = w.Offset; at < w.Offset + w.Data.Length;)
        {
            long end = Math.Min(w.Offset + w.Data.Length, (at / 512 + 1) * 512);
            yield return new WriteChange(at, w.Data[(int)(at - w.Offset)..(int)(end - w.Offset)]);
            at = end;
        }
    }

    /// <summary>A growable byte image of the medium.</summary>
    private sealed class Medium
    {
        private byte[] _bytes;
        private long _length;

        public Medium(byte[] initial)
        {
            _bytes = (byte[])initial.Clone();
            _length = initial.Length;
        }

        public Medium Clone() => new(ToArray());

        public byte[] ToArray() => _bytes.AsSpan(0, (int)_length).ToArray();

        public void Apply(Change change)
        {
            switch (change)
            {
                case WriteChange w:
                    Grow(w.Offset + w.Data.Length);
                    w.Data.CopyTo(_bytes, w.Offset);
                    break;
                case ZeroChange z:
                    long end = z.Extends ? z.Offset + z.Length : Math.Min(z.Offset + z.Length, _length);
                    if (z.Extends) Grow(end);
                    if (end > z.Offset) _bytes.AsSpan((int)z.Offset, (int)(end - z.Offset)).Clear();
                    break;
                case ResizeChange r:
                    Grow(r.Length);
                    if (r.Length < _length) _bytes.AsSpan((int)r.Length, (int)(_length - r.Length)).Clear();
                    _length = r.Length;
                    break;
            }
        }

        private void Grow(long length)
        {
            if (length > _bytes.Length) Array.Resize(ref _bytes, (int)Math.Max(length, Math.Min(_bytes.Length * 2L, Array.MaxLength)));
            if (length > _length) _length = length;
        }
    }
}

/// <summary>What kind of change a storage recorded.</summary>
public enum RecordedChangeKind { Write, Zero, Discard, Resize, Flush }

/// <summary>One recorded change (for a resize, <paramref name="Offset"/> is the new length).</summary>
public sealed record RecordedChange(RecordedChangeKind Kind, long Offset, long Length);

/// <summary>What a medium might hold after a simulated power cut.</summary>
/// <param name="Flushes">Flushes that had completed before the cut.</param>
/// <param name="Change">Index of the first change not known to be durable (the cut is before the flush there).</param>
/// <param name="Description">Which subset of the pending writes survived.</param>
/// <param name="Bytes">The medium's content.</param>
public sealed record CrashImage(int Flushes, int Change, string Description, byte[] Bytes);
