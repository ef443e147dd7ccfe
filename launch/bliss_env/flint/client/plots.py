"""Plot classes BLISS names; creating one means Flint was asked for, which this environment refuses."""


class BasePlot:
    def __init__(self, *args, **kwargs):
        raise RuntimeError("Flint is not available in this environment")


class LiveCurvePlot(BasePlot):
    pass


class LiveScatterPlot(BasePlot):
    pass


class LiveMcaPlot(BasePlot):
    pass


class LiveImagePlot(BasePlot):
    pass
