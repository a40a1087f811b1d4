// Measures what each engine call allocates on the calling thread (GC.GetAllocatedBytesForCurrentThread is exact
// for this thread), so an input that makes one call allocate more than the budget is a crash even when the
// call then fails cleanly. The total lets a target stop a long walk once it has seen enough.
namespace VDisk.Fuzz;

/// <summary>Per-call allocation budget and running total for one input.</summary>
public sealed class AllocationMeter
{
    private readonly long _budget;
    private readonly long _start = GC.GetAllocatedBytesForCurrentThread();

    /// <summary>Creates a meter whose calls may each allocate at most <paramref name="budget"/> bytes.</summary>
    public AllocationMeter(long budget) => _budget = budget;

    /// <summary>Bytes allocated on this thread since the meter was created.</summary>
    public long Total => GC.GetAllocatedBytesForCurrentThread() - _start;

    /// <summary>Runs one engine call, named <paramref name="what"/> in a finding.</summary>
    public T Call<T>(string what, Func<T> call)
    {
        long before = GC.GetAllocatedBytesForCurrentThread();
        T result;
        try
        {
            result = call();
        }
        catch
        {
            Check(what, before);
            throw;
        }
        Check(what, before);
        return result;
    }

    /// <summary>Runs one engine call that returns nothing.</summary>
    public void Call(string what, Action call) => Call(what, () =>
    {
        call();
        return 0;
    });

    private void Check(string what, long before)
    {
        long used = GC.GetAllocatedBytesForCurrentThread() - before;
        if (used > _budget)
            throw new FuzzFinding($"{what} allocated {used >> 20} MiB; one engine call may allocate at most {_budget >> 20} MiB.");
    }
}
